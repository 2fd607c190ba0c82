"""The language-model commands: `python -m routing lm {datasets,anchor,train,check,compose,
evaluate,generate,export}` (commands.py and compose_commands.py run them)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ...basemodels import DEFAULT_LM_BASE
from ...config import LMRouting
from .commands import cmd_anchor, cmd_check, cmd_datasets, cmd_train
from .compose_commands import cmd_compose, cmd_evaluate, cmd_export, cmd_generate

ROUTERS = ("learned", "centroid", "prefix-likelihood")
MLP = "gate_proj,up_proj,down_proj"
ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj," + MLP


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
    common.add_argument("--anchor", type=Path, help="the mixture's anchor: merged into the base")

    commands.add_parser("datasets", help="the packaged text corpora and their splits")

    p = commands.add_parser("anchor", parents=[common],
                            help="train a mixture's anchor on public text")  # fmt: skip
    p.add_argument("--corpus", default="speeches", help="packaged name, or a .txt/.jsonl file")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit", type=int, default=400, help="at most this many training texts")
    p.add_argument("--eval-limit", type=int, default=100, help="held-out texts to report on")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--target-modules", default=ALL_LINEAR, help="merged into the base for all")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)

    p = commands.add_parser("train", parents=[common], help="train a LoRA expert on a corpus")
    p.add_argument(
        "--corpus",
        required=True,
        help="packaged name, or a .txt/.jsonl file; "
        "several, by commas, train one adapter on all of them (a multitask LoRA)",
    )
    p.add_argument("--domain", help="domain name written into the file (default: corpus)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit", type=int, default=200, help="at most this many training texts")
    p.add_argument("--eval-limit", type=int, default=100, help="held-out texts to report on")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--target-modules", default=MLP,
                   help="the MLP's (the default) compose per token and per sequence; "
                   "attention modules per sequence only")  # fmt: skip
    p.add_argument("--coordinated", action="store_true",
                   help="train beside the frozen shared expert (base + anchor) in a two-expert "
                   "per-token mixture (FlexOlmo's step) instead of alone on base + anchor "
                   "(the default: better in docs/results-lm.md)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hub", help="a hub's address: train for one of its mixtures (its base, "
                   "anchor and modules, read from its API), check against it")  # fmt: skip
    p.add_argument("--mixture", help="with --hub: the mixture's slug")
    p.add_argument("--upload", action="store_true",
                   help="with --hub: upload it (--token) and follow its validation")  # fmt: skip
    p.add_argument("--token", default=os.environ.get("MOECOLLAB_TOKEN"),
                   help="with --upload: your API token (default: $MOECOLLAB_TOKEN)")  # fmt: skip
    p.add_argument("--name", help="with --upload: the expert's name (default: DOMAIN expert)")

    p = commands.add_parser("check", parents=[common], help="check a file against the contract")
    p.add_argument("file")
    p.add_argument("--adapter-config", help="adapter_config.json of a PEFT adapter")

    p = commands.add_parser("compose", parents=[common], help="route experts, score per domain")
    p.add_argument("experts", nargs="+", help="FILE[=CORPUS] (default: the file's domain)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--granularity", choices=("sequence", "token"), default="sequence",
                   help="route each text by its prefix, or each token in every layer")  # fmt: skip
    p.add_argument("--router", choices=ROUTERS, default="learned", help="sequence routing")
    p.add_argument("--mixing", choices=("mix", "merge"), default="mix", help="sequence routing")
    p.add_argument("--top-k", type=int, help="experts per text (1) or per token (2)")
    p.add_argument("--gate-hidden", type=int, default=128)
    p.add_argument("--token-temperature", type=float, default=LMRouting.token_temperature)
    p.add_argument("--tune-router", action="store_true",
                   help="per token: tune the router rows on the router texts")  # fmt: skip
    p.add_argument("--tune-steps", type=int, default=LMRouting.tune_steps)
    p.add_argument("--shared-corpus", help="per token: the texts of the shared expert's "
                   "router row (default: the experts' router texts)")  # fmt: skip
    p.add_argument("--limit", type=int, default=200, help="texts per router and eval split")
    p.add_argument("--against", type=Path,
                   help="one more adapter to score beside it, on the base without the anchor "
                   "(a multitask LoRA trained on every corpus)")  # fmt: skip

    p = commands.add_parser("evaluate", parents=[common], help="score a composition per domain")
    p.add_argument("folder")
    p.add_argument("--top-k", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--against", type=Path, help="one more adapter to score beside it")
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
    "anchor": cmd_anchor,
    "train": cmd_train,
    "check": cmd_check,
    "compose": cmd_compose,
    "evaluate": cmd_evaluate,
    "generate": cmd_generate,
    "export": cmd_export,
}


def run(args) -> int:
    return COMMANDS[args.lm_command](args)
