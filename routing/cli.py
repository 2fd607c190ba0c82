"""Command line: python -m routing {datasets,train,check,compose,evaluate,predict,export}
for classification mixtures, and `python -m routing lm ...` for language-model mixtures."""

from __future__ import annotations

import argparse
import os
import sys

from .kinds.causal_lm import cli as causal_lm
from .kinds.classification import cli as classification
from .tables import table


def cmd_datasets(args) -> int:
    from .data import PACKAGED, load_domain

    rows = []
    for name, (description, _) in PACKAGED.items():
        d = load_domain(name)
        rows.append([name, len(d.labels), len(d.train), len(d.router), len(d.eval), description])
    print(table(rows, ["name", "labels", "train", "router", "eval", "description"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m routing", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list the packaged datasets and their splits")
    classification.add_commands(sub)
    causal_lm.add_commands(sub)
    return parser


COMMANDS = {"datasets": cmd_datasets, **classification.COMMANDS, "lm": causal_lm.run}


def main(argv: list[str] | None = None) -> int:
    # The CLI works offline unless told otherwise (packaged model and datasets).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .data import DatasetError
    from .safetensors_header import ContractError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ContractError, DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
