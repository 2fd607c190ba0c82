"""The language-model benchmark's report: figures over seeds, the targets, the tables of
docs/results-lm.md and its plots (bench/lm.py calls `write_report`)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bench.lm_systems import DOMAINS


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(per_seed: list[dict]) -> dict:
    """system -> {"domains": {d: (mean, std)}, "overall": (mean, std), "routing": ...}"""
    out = {}
    for system in per_seed[0]["systems"]:
        runs = [s["systems"][system] for s in per_seed]
        entry = {
            "domains": {d: mean_std([r["domains"][d] for r in runs]) for d in DOMAINS},
            "overall": mean_std([r["overall"]["perplexity"] for r in runs]),
        }
        if "routing_accuracy" in runs[0]["overall"]:
            entry["routing_accuracy"] = mean_std([r["overall"]["routing_accuracy"] for r in runs])
            entry["load_entropy"] = mean_std([r["utilisation"]["entropy"] for r in runs])
        out[system] = entry
    return out


def targets(
    summary: dict, timing: dict, gate_seconds: float, expert_seconds: float, trained_on: int
) -> list:
    """(target, measured, met) for each of the issue's targets."""
    learned, oracle = summary["learned top-1"], summary["oracle routing"]
    gap = learned["overall"][0] / oracle["overall"][0] - 1
    worse_than_merge = [
        d for d in DOMAINS if learned["domains"][d][0] >= summary["uniform merge"]["domains"][d][0]
    ]
    worse_than_base = [
        d for d in DOMAINS if learned["domains"][d][0] >= summary["base model"]["domains"][d][0]
    ]
    multitask = summary["multitask LoRA (same budget)"]["domains"]
    beats = [d for d in DOMAINS if learned["domains"][d][0] < multitask[d][0]]
    ratio = timing["composition top-1"]["generate"] / timing["base + one PEFT adapter"]["generate"]
    return [
        (
            "learned top-1 within 2 % of oracle perplexity overall",
            f"{100 * gap:+.2f} %",
            gap <= 0.02,
        ),
        (
            "better than the uniform merge on every domain",
            "every domain" if not worse_than_merge else f"not on {worse_than_merge}",
            not worse_than_merge,
        ),
        (
            "better than the base model on every domain",
            "every domain" if not worse_than_base else f"not on {worse_than_base}",
            not worse_than_base,
        ),
        (
            "better than the multitask LoRA of the same budget on at least 3 of 4 domains",
            f"{len(beats)} of 4 ({', '.join(beats) or 'none'})",
            len(beats) >= 3,
        ),
        (
            "top-1 generation at least 0.9x the tokens/s of the base with one PEFT adapter",
            f"{ratio:.2f}x",
            ratio >= 0.9,
        ),
        (
            "gate retraining from cache under 2 s (8 experts, 5,000 router sequences)",
            f"{gate_seconds:.2f} s",
            gate_seconds < 2,
        ),
        (
            "a contributor's expert (200 sequences of 128 tokens) trains in under 10 minutes",
            f"{expert_seconds / 60:.1f} min (measured at {200} sequences)",
            expert_seconds < 600,
        ),
    ]


def _cell(pair) -> str:
    mean, std = pair
    return "n/a" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"


def markdown(results: dict) -> str:
    summary, meta = results["summary"], results["meta"]
    lines = [
        "# Language-model mixtures: the benchmark",
        "",
        "Written by `bench/lm.py` ("
        + ("`--quick`" if meta["quick"] else "full run")
        + f", {meta['seeds']} seed(s), {meta['seconds'] / 60:.1f} min on {meta['machine']}). "
        f"Base model `{meta['base']}`. Four packaged text domains, one LoRA expert each "
        f"(rank {meta['rank']} on q_proj and v_proj), trained only on its own domain's "
        f"{meta['train']} texts of at most 128 tokens; every system is scored on the same "
        f"{meta['eval']} held-out texts per domain: perplexity of each text's continuation "
        f"after its first {meta['prefix_tokens']} tokens (the router reads only those). "
        "Mean ± standard deviation over the seeds; lower is better. Regenerate with:",
        "",
        "```bash",
        f".venv/bin/{meta['command']}",
        "```",
        "",
        "## Perplexity",
        "",
        "| System | " + " | ".join(DOMAINS) + " | overall | routing accuracy |",
        "|---|" + "---:|" * (len(DOMAINS) + 2),
    ]
    for system, entry in summary.items():
        routing = entry.get("routing_accuracy")
        lines.append(
            f"| {system} | "
            + " | ".join(_cell(entry["domains"][d]) for d in DOMAINS)
            + f" | {_cell(entry['overall'])} | "
            + (f"{100 * routing[0]:.1f} %" if routing else "")
            + " |"
        )
    lines += [
        "",
        "![held-out perplexity per system and domain](img/lm-perplexity.png)",
        "![routing matrix of the learned top-1 router](img/lm-routing-matrix.png)",
    ]
    lines += ["", "## Targets", "", "| Target | Measured | Met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in results["targets"]]
    lines += [
        "",
        "## Inference cost",
        "",
        "Measured in one run on the same prompts (tokens/s; ratio to the base model), and "
        "counted FLOPs per token of a 128-token text (ratio to the base model).",
        "",
        "| System | prefill tokens/s | ratio | generation tokens/s | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for system, t in results["timing"].items():
        lines.append(
            f"| {system} | {t['prefill']:.0f} | {t['prefill_ratio']:.2f} | "
            f"{t['generate']:.1f} | {t['generate_ratio']:.2f} |"
        )
    lines += ["", "| System | FLOPs per token | ratio |", "|---|---:|---:|"]
    base_flops = results["flops"]["base model"]
    for system, f in results["flops"].items():
        lines.append(f"| {system} | {f / 1e6:.1f} M | {f / base_flops:.3f} |")
    cost = results["training"]
    lines += [
        "",
        "## Training cost",
        "",
        f"Each contributor trains one expert: {cost['expert_seconds']:.0f} s on average for "
        f"{meta['train']} texts; the multitask LoRA of the same budget, trained centrally on "
        f"all four domains, took {cost['multitask_seconds']:.0f} s. The gate retrains from "
        f"cached tensors only: {results['gate_seconds']:.2f} s for 8 experts and 5,000 router "
        "sequences.",
        "",
        "## Sample generations (learned top-1, greedy)",
        "",
    ]
    for g in results["generations"]:
        experts = ", ".join(f"{n} {w:.2f}" for n, w in g["experts"])
        lines.append(f"- [{experts}] *{g['prompt'].strip()[:80]}* → {g['text'].strip()[:160]}")
    lines += ["", "## Reading", "", results.get("reading", "").strip(), ""]
    return "\n".join(lines)


def plots(results: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    systems = list(summary)
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(DOMAINS)
    for i, d in enumerate(DOMAINS):
        ax.bar(
            [x + i * width for x in range(len(systems))],
            [summary[s]["domains"][d][0] for s in systems],
            width,
            label=d,
        )
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(systems))])
    ax.set_xticklabels(systems, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("held-out perplexity (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "lm-perplexity.png", dpi=110)
    plt.close(fig)
    matrix = results["routing_matrix"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(DOMAINS)), [f"{d} expert" for d in DOMAINS], rotation=30, ha="right")
    ax.set_yticks(range(len(DOMAINS)), DOMAINS)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title("learned top-1: share of each domain's texts")
    fig.tight_layout()
    fig.savefig(folder / "lm-routing-matrix.png", dpi=110)
    plt.close(fig)


def write_report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "img").mkdir(exist_ok=True)
    plots(results, out / "img")
    (out / "results-lm.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results-lm.md").write_text(markdown(results))
