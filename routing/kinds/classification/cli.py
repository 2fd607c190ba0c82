"""The classification commands of `python -m routing`: train, check, compose, evaluate,
predict, export (commands.py runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...basemodels import DEFAULT_BASE_MODEL
from ...config import GATE_FEATURES
from .commands import cmd_check, cmd_compose, cmd_evaluate, cmd_export, cmd_predict, cmd_train
from .encoder import DEFAULT_MAX_LENGTH


def add_commands(sub) -> None:
    """The classification commands, on the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base", default=DEFAULT_BASE_MODEL, help="base model: Hugging Face id or local folder"
    )
    common.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    common.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    common.add_argument(
        "--cache",
        default=None,
        help="feature cache folder (default: $MOECOLLAB_CACHE or ~/.cache/moecollab)",
    )
    common.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("train", parents=[common], help="train an expert on one domain")
    p.add_argument("--dataset", required=True, help="packaged name or CSV/JSONL file")
    p.add_argument("--domain", help="domain name written into the file (default: dataset name)")
    p.add_argument(
        "--architecture",
        "--kind",  # its name before 0.2
        dest="architecture",
        choices=("head", "lora"),
        default="head",
        help="head: an MLP over the frozen base's embedding; lora: LoRA on the encoder",
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit", type=int, help="at most this many training examples")
    p.add_argument(
        "--all-data",
        action="store_true",
        help="train on every example, not only the 70%% training part of the split",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--hidden", type=int, default=256, help="head: hidden width")
    p.add_argument("--rank", type=int, default=8, help="lora: rank")
    p.add_argument("--target-modules", default="query,value", help="lora: modules to adapt")

    p = sub.add_parser("check", parents=[common], help="check a file against the contract")
    p.add_argument("file")
    p.add_argument("--hub", help="a hub's address: check against one of its domains, as it will")
    p.add_argument("--mixture", help="with --hub: the mixture's slug")
    p.add_argument("--domain", help="with --hub: the domain's name")
    p.add_argument("--labels-from", help="dataset whose labels the expert must have")
    p.add_argument("--adapter-config", help="adapter_config.json of a PEFT adapter")

    p = sub.add_parser("compose", parents=[common], help="train a gate over experts")
    p.add_argument("experts", nargs="+", help="FILE[=DATASET] (default: the file's domain)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--gate-hidden", type=int, default=128)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--limit", type=int, help="at most this many examples per split")
    p.add_argument(
        "--gate-features",
        choices=GATE_FEATURES,
        default=GATE_FEATURES[0],
        help="what the gate reads of the base pass (docs/routing.md)",
    )
    for flag, what in (
        ("--no-read-experts", "the gate does not read the head experts' confidence"),
        ("--no-calibrate", "no temperature per expert"),
        ("--no-balance", "router examples drawn as they come, not in balance per domain"),
    ):
        p.add_argument(flag, action="store_true", help=what)

    p = sub.add_parser("evaluate", parents=[common], help="score a composition per domain")
    p.add_argument("folder")
    p.add_argument("--top-k", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--data", action="append", help="DOMAIN=DATASET to override a domain's data")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", parents=[common], help="classify texts (args or stdin)")
    p.add_argument("folder", help="a composition folder, or one expert file")
    p.add_argument("texts", nargs="*")
    p.add_argument("--top-k", type=int)

    p = sub.add_parser("export", help="write a composition as a Hugging Face model folder")
    p.add_argument("folder", help="a composition folder (from compose)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--repo-id", help="the Hub repository the model card's snippets name")
    p.add_argument("--title", help="the model card's title")
    p.add_argument("--base-licence", default="apache-2.0", help="licence of the base model")


COMMANDS = {
    "train": cmd_train,
    "check": cmd_check,
    "compose": cmd_compose,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "export": cmd_export,
}
