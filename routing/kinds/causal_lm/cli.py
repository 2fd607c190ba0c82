"""The language-model commands: `python -m routing lm {datasets,train,check,compose,
evaluate,generate,export}` (commands.py runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...basemodels import DEFAULT_LM_BASE
from ...config import LMRouting
from .commands import (
    cmd_check,
    cmd_compose,
    cmd_datasets,
    cmd_evaluate,
    cmd_export,
    cmd_generate,
    cmd_train,
)

ROUTERS = ("learned", "centroid", "prefix-likelihood")


def add_commands(sub) -> None:
    """`lm` and its commands, on the CLI's subparsers."""
    lm = sub.add_parser("lm", help="language-model mixtures: LoRA experts of a causal LM")
    commands = lm.add_subparsers(dest="lm_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base", default=DEFAULT_LM_BASE,
                        help="base causal LM: Hugging Face id or local folder")  # fmt: skip
    common.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    common.add_argument("--max-tokens", type=int, default=128, help="texts are cut here")
    common.add_argument(
        "--prefix-tokens",
        type=int,
        default=LMRouting.prefix_tokens,
        help="the router reads only these; perplexity is scored after them",
    )
    common.add_argument("--cache", default=None, help="feature cache folder")
    common.add_argument("--seed", type=int, default=0)

    commands.add_parser("datasets", help="the packaged text corpora and their splits")

    p = commands.add_parser("train", parents=[common], help="train a LoRA expert on a corpus")
    p.add_argument("--corpus", required=True, help="packaged name, or a .txt/.jsonl file")
    p.add_argument("--domain", help="domain name written into the file (default: corpus)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit", type=int, default=200, help="at most this many training texts")
    p.add_argument("--eval-limit", type=int, default=100, help="held-out texts to report on")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--target-modules", default="q_proj,v_proj")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)

    p = commands.add_parser("check", parents=[common], help="check a file against the contract")
    p.add_argument("file")
    p.add_argument("--adapter-config", help="adapter_config.json of a PEFT adapter")

    p = commands.add_parser("compose", parents=[common], help="route experts, score per domain")
    p.add_argument("experts", nargs="+", help="FILE[=CORPUS] (default: the file's domain)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--router", choices=ROUTERS, default="learned")
    p.add_argument("--mixing", choices=("mix", "merge"), default="mix")
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--gate-hidden", type=int, default=128)
    p.add_argument("--limit", type=int, default=200, help="texts per router and eval split")

    p = commands.add_parser("evaluate", parents=[common], help="score a composition per domain")
    p.add_argument("folder")
    p.add_argument("--top-k", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true")

    p = commands.add_parser("generate", parents=[common], help="generate from prompts")
    p.add_argument("folder", help="a composition folder, or one expert file")
    p.add_argument("prompts", nargs="*")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--sample", action="store_true", help="sample (default: greedy)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, help="experts per prompt (default: the composition's)")

    p = commands.add_parser("export", help="write a composition as a Hugging Face model folder")
    p.add_argument("folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--repo-id", help="the Hub repository the model card's snippets name")
    p.add_argument("--title")
    p.add_argument("--base-licence", default="apache-2.0")


COMMANDS = {
    "datasets": cmd_datasets,
    "train": cmd_train,
    "check": cmd_check,
    "compose": cmd_compose,
    "evaluate": cmd_evaluate,
    "generate": cmd_generate,
    "export": cmd_export,
}


def run(args) -> int:
    return COMMANDS[args.lm_command](args)
