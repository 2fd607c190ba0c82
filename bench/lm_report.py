"""The language-model benchmark's report: the tables of docs/results-lm.md and its plots,
from the merged runs (bench/lm_merge.py; bench/lm.py calls `write_report`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.lm_caveats import caveats
from bench.lm_merge import merge_runs
from bench.lm_systems import DOMAINS

__all__ = ["merge_runs", "write_report"]


def _cell(pair) -> str:
    mean, std = pair
    return "n/a" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"


READING = """
The router reads only each text's first 32 tokens and is scored on the rest, as in
Branch-Train-Merge; per-token systems are scored on the same tokens. Oracle routing is each
text's own domain's expert; the learned router's gap to it is the price of routing from a
prefix. The uniform ensemble and merge show what routing buys over using every expert for
everything; the multitask LoRA (same budget) is the monolithic model trained centrally on
the four domains with the first experts' parameters. The fair multitask LoRA is the single
model an anchored mixture must beat: the anchor's and the experts' total optimiser steps
and trainable parameters, on every text any of them saw, the public texts included. Timings
are ratios within one run on the same prompts, so machine load cancels out.
"""


def _table(summary: dict) -> list[str]:
    lines = [
        "| System | " + " | ".join(DOMAINS) + " | overall | routing accuracy | seeds |",
        "|---|" + "---:|" * (len(DOMAINS) + 3),
    ]
    for system, entry in summary.items():
        routing = entry.get("routing_accuracy")
        lines.append(
            f"| {system} | "
            + " | ".join(_cell(entry["domains"][d]) for d in DOMAINS)
            + f" | {_cell(entry['overall'])} | "
            + (f"{100 * routing[0]:.1f} %" if routing else "")
            + f" | {entry.get('seeds', '')} |"
        )
    return lines


def verdict(results: dict) -> list[str]:
    """What the runs say about the mixture against the fair single model, per data size."""
    from bench.lm_merge import best_of, compositions, diverged, tuned_verdict
    from bench.lm_merge import verdict as merge_verdict

    lines = []
    for size, entry in results["sizes"].items():
        summary = entry["summary"]
        if not compositions(summary):
            continue
        best = best_of(summary, compositions(summary))
        if "fair multitask LoRA" not in summary:
            lines.append(f"- **{size} texts per domain** ({len(entry['seeds'])} seed(s)): the "
                         "fair multitask LoRA is not measured at this size yet; the best "
                         f"composition, *{best}*, reaches {summary[best]['overall'][0]:.3f} "
                         f"overall{_same_seeds(results, size, best)}.")  # fmt: skip
            continue
        reference = diverged(summary)
        if reference:
            fair = summary["fair multitask LoRA"]["overall"][0]
            lines.append(f"- **{size} texts per domain** ({len(entry['seeds'])} seed(s)): the "
                         "fair multitask LoRA **diverged** with its given learning rate "
                         f"(overall perplexity {fair:.3f}, worse than the {reference}'s "
                         f"{summary[reference]['overall'][0]:.3f}): no fair comparison at this "
                         f"size yet; the best composition, *{best}*, reaches "
                         f"{summary[best]['overall'][0]:.3f} overall"
                         f"{_same_seeds(results, size, best)}.")  # fmt: skip
            continue
        wins, ours, theirs, beats = merge_verdict(summary, best)
        tuned = tuned_verdict(results, size, best)
        end = "**beats** the single model here." if beats else "does **not** beat it here."
        if beats and tuned and not tuned[1][3]:
            end = ("beats it on this mean only, where some seeds' single model had a given "
                   "learning rate: against it searched (seeds "
                   + ", ".join(map(str, tuned[0])) + ") it does **not**.")  # fmt: skip
        lines.append(
            f"- **{size} texts per domain** ({len(entry['seeds'])} seed(s)): the best composition, "
            f"*{best}*, is {'below' if ours < theirs else 'above'} the fair multitask LoRA "
            f"overall ({ours:.3f} against {theirs:.3f}, {100 * (ours / theirs - 1):+.1f} %) and "
            f"lower on {len(wins)} of 4 domains ({', '.join(wins) or 'none'}): the mixture " + end
        )
    return lines


def _same_seeds(results: dict, size: int, system: str) -> str:
    """The same system at the other sizes on the same seeds, as a clause."""
    seeds = set(results["sizes"][size]["seeds"])
    parts = []
    for other, entry in results["sizes"].items():
        runs = [r for r in entry["per_seed"] if r["seed"] in seeds and system in r["systems"]]
        if other != size and runs:
            mean = sum(r["systems"][system]["overall"]["perplexity"] for r in runs) / len(runs)
            parts.append(f"{mean:.3f} at {other} texts per domain on the same seed(s)")
    return f" (against {', '.join(parts)})" if parts else ""


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# Language-model mixtures: the benchmark",
        "",
        f"Written by `bench/lm.py` from {len(results['runs'])} run(s), "
        f"{meta['seconds'] / 60:.0f} min in all on {meta['machine']}. Base model "
        f"`{meta['base']}`. Four packaged text domains, one LoRA expert each, trained only on "
        f"its own domain's texts of at most 128 tokens; every system is scored on the same "
        f"{meta['eval']} held-out texts per domain: perplexity of each text's continuation "
        f"after its first {meta['prefix_tokens']} tokens (the sequence router reads only "
        "those). Mean ± standard deviation over the seeds; lower is better.",
        "",
        "## Does the mixture beat the single model?",
        "",
        *verdict(results),
        *(["", "What limits this:", "", *limits] if (limits := caveats(results)) else []),
        "",
        f"The targets are judged at {results['claim_size']} texts per domain.",
        "",
        "## Targets",
        "",
        "| Target | Measured | Met |",
        "|---|---|---|",
        *[f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in results["targets"]],
    ]
    for size, entry in results["sizes"].items():
        lines += ["", f"## Perplexity, {size} training texts per domain", "", *_table(
            entry["summary"])]  # fmt: skip
    lines += ["", "![held-out perplexity per system and domain](img/lm-perplexity.png)"]
    if "routing_matrix" in results:
        lines += ["![routing matrix of the learned top-1 router](img/lm-routing-matrix.png)"]
    if "layer_routing" in results:
        lines += ["![per-token routing by layer](img/lm-token-routing.png)"]
    lines += ["", "## Inference cost", ""]
    for key, title in (("timing", "sequence-level"), ("token_timing", "per-token")):
        if key in results:
            lines += [
                f"Measured in one run on the same prompts ({title}; tokens/s, ratio to the "
                "base model):",
                "",
                "| System | prefill tokens/s | ratio | generation tokens/s | ratio |",
                "|---|---:|---:|---:|---:|",
            ]
            for system, t in results[key].items():
                lines.append(
                    f"| {system} | {t['prefill']:.0f} | {t['prefill_ratio']:.2f} | "
                    f"{t['generate']:.1f} | {t['generate_ratio']:.2f} |"
                )
            lines.append("")
    for key in ("flops", "token_flops"):
        if key in results:
            base_flops = results[key]["base model"]
            lines += ["| System | FLOPs per token (128-token text) | ratio |", "|---|---:|---:|"]
            lines += [f"| {s} | {f / 1e6:.1f} M | {f / base_flops:.3f} |"
                      for s, f in results[key].items()]  # fmt: skip
            lines.append("")
    lines += ["## Training cost", ""]
    for size, cost in results["training"].items():
        # under 1 s: a file an earlier run of the seed trained (not timed here)
        parts = ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in cost.items() if v >= 1)
        lines.append(f"- {size} texts per domain (mean per run or per expert): {parts}")
    if "fair_multitask" in results:
        f = results["fair_multitask"]
        tried = ", ".join(f"{lr}: {p:.3f}" for lr, p in f["router_perplexity"].items())
        chosen = (
            f"the best on the router texts of those tried ({tried})"
            if len(f["router_perplexity"]) > 1
            else f"given (router perplexity {tried})"
        )
        lines.append(
            f"- the fair multitask LoRA: rank {f['rank']} on every linear module "
            f"({f['parameters']:,} trainable parameters, as the anchor and the four experts), "
            f"{f['steps']} optimiser steps (as theirs); learning rate {f['lr']:g}, {chosen}"
        )
    for family, search in results.get("expert_rates", {}).items():
        kept = "; ".join(
            f"{d} {c['lr']:g} ("
            + ", ".join(f"{lr}: {p:.3f}" for lr, p in c["router_perplexity"].items())
            + ")"
            for d, c in search.items()
        )
        lines.append(f"- the {family} experts' learning rate, searched by each contributor on its "
                     f"own router texts (seed 0; router perplexity per rate): {kept}")  # fmt: skip
    if "add_expert" in results:
        a = results["add_expert"]
        lines.append(
            f"- adding an expert to a per-token composition of {a['experts'] - 1}: router rows "
            f"{a['rows_seconds']:.1f} s (its domain's statistics; the others' kept), tuning "
            f"{a['tuning_seconds']:.1f} s"
        )
    if "gate_seconds" in results:
        lines.append(
            f"- the sequence gate retrains from cached tensors only: "
            f"{results['gate_seconds']:.2f} s for 8 experts and 5,000 router sequences"
        )
    for key, title in (("generations", "learned top-1"), ("token_generations", "per token")):
        if key in results:
            lines += ["", f"## Sample generations ({title}, greedy)", ""]
            for g in results[key]:
                experts = ", ".join(f"{n} {w:.2f}" for n, w in g["experts"])
                lines.append(
                    f"- [{experts}] *{g['prompt'].strip()[:80]}* → {g['text'].strip()[:160]}"
                )
    lines += ["", "## Runs", "", "| Texts | Seed | Families | Minutes | Command |",
              "|---:|---:|---|---:|---|"]  # fmt: skip
    lines += [f"| {r['train']} | {r['seed']} | {', '.join(r['families'])} | {r['minutes']:.1f} "
              f"| `{r['command']}` |" for r in results["runs"]]  # fmt: skip
    lines += ["", "## Reading", "", READING.strip(), ""]
    return "\n".join(lines)


def plots(results: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    systems = list(summary)
    fig, ax = plt.subplots(figsize=(max(10, 0.45 * len(systems)), 5))
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
    if "layer_routing" in results:
        token_routing_plot(results["layer_routing"], folder)
    if "routing_matrix" not in results:
        return
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


def token_routing_plot(routing: dict, folder: Path) -> None:
    """Per layer, the share of each domain's tokens whose top expert is each expert: one
    heatmap per domain (layers down, experts across)."""
    import matplotlib.pyplot as plt

    names, domains = routing["names"], routing["domains"]
    fig, axes = plt.subplots(1, len(domains), figsize=(3 * len(domains), 6), sharey=True)
    for ax, domain, by_layer in zip(axes, domains, routing["by_layer"], strict=True):
        ax.imshow(by_layer, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_title(f"{domain} tokens", fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    axes[0].set_ylabel("layer")
    fig.suptitle("per-token routing: share of each domain's tokens to each expert, by layer")
    fig.tight_layout()
    fig.savefig(folder / "lm-token-routing.png", dpi=110)
    plt.close(fig)


def write_report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "img").mkdir(exist_ok=True)
    plots(results, out / "img")
    (out / "results-lm.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results-lm.md").write_text(markdown(results))
