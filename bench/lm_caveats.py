"""What limits the language-model benchmark's claim, read off the merged runs: the report's
"What limits this" lines (bench/lm_report.py writes them)."""

from __future__ import annotations

from bench.lm_merge import (
    against,
    best_of,
    compositions,
    diverged,
    searched_seeds,
    tuned_verdict,
)
from bench.lm_systems import DOMAINS

EXPERT_LR = 2e-3  # the experts' rate where a run did not search it (bench/lm_anchored.py)


def caveats(results: dict) -> list[str]:
    """What limits the claim, read off the runs themselves."""
    lines = []
    sizes = results["sizes"]
    claim = sizes[results["claim_size"]]
    if len(claim["seeds"]) < 3:
        n = len(claim["seeds"])
        lines.append(
            f"- {n} seed(s) at {results['claim_size']} texts per domain, not 3: "
            + ("the ± columns are empty and a seed's luck is not averaged out." if n == 1
               else f"the ± columns are the spread of {n} seeds only.")
        )  # fmt: skip
    if len(sizes) < 2:
        lines.append("- one data size only: how the gap moves with data is not measured.")
    for n, e in sizes.items():
        if diverged(e["summary"]):
            lines.append(f"- the fair multitask LoRA diverged at {n} texts per domain with the "
                         "given learning rate: its learning rate must be searched at that "
                         "size (`--families multitask` without `--multitask-lr`) before the "
                         "gap there is known.")  # fmt: skip
    unmatched = [str(n) for n, e in sizes.items() if "fair multitask LoRA" not in e["summary"]]
    if unmatched:
        lines.append(f"- the fair multitask LoRA is not measured at {', '.join(unmatched)} texts "
                     "per domain: how the gap to it moves with data is not known yet.")  # fmt: skip
    lines += expert_rate_caveats(results) + rate_caveats(results)
    other = _other_single_model(results)
    lines += [other] if other else []
    summary = results["summary"]
    if "anchor alone" in summary and "base model" in summary:
        worse = [
            d
            for d in DOMAINS
            if summary["anchor alone"]["domains"][d][0] > summary["base model"]["domains"][d][0]
        ]
        if worse:
            lines.append(
                f"- the anchor alone is worse than the base on {', '.join(worse)} "
                "(the hub would refuse it); the experts more than make up for it."
            )
    return lines


def _other_single_model(results: dict) -> str:
    """Where the older multitask LoRA (the experts' own budget) does better than the fair
    one: how the best composition fares against it on the same seeds, as a sentence."""
    summary = results["summary"]
    older, fair = "multitask LoRA (same budget)", "fair multitask LoRA"
    if older not in summary or fair not in summary:
        return ""
    if summary[older]["overall"][0] >= summary[fair]["overall"][0]:
        return ""
    best = best_of(summary, compositions(summary))
    runs = [r["systems"] for r in results["sizes"][results["claim_size"]]["per_seed"]
            if older in r["systems"] and best in r["systems"]]  # fmt: skip
    if not runs:
        return ""

    def mean(system, domain=None):
        return sum(r[system]["domains"][domain] if domain else r[system]["overall"]["perplexity"]
                   for r in runs) / len(runs)  # fmt: skip

    ours, theirs = mean(best), mean(older)
    wins = [d for d in DOMAINS if mean(best, d) < mean(older, d)]
    change = 100 * (ours / theirs - 1)
    return (f"- the {older} does better than the fair one; on the {len(runs)} seed(s) it was "
            f"measured on, *{best}* reaches {ours:.3f} against its {theirs:.3f} "
            f"({change:+.1f} %), lower on {len(wins)} of 4 domains.")  # fmt: skip


def rate_caveats(result: dict) -> list[str]:
    """Report lines: where the fair multitask LoRA's learning rate was given rather than
    searched, per data size, and the verdict on the seeds where it was searched."""
    lines = []
    for size, rates in result.get("fair_rates", {}).items():
        summary = result["sizes"][size]["summary"]
        searched, given = searched_seeds(result, size)
        if not given or diverged(summary) or not compositions(summary):
            continue
        said = ", ".join(f"{rates[s]['lr']:g} on seed {s}" for s in given)
        line = (f"- at {size} texts per domain the fair multitask LoRA's learning rate was "
                f"given ({said})")  # fmt: skip
        best = best_of(summary, compositions(summary))
        tuned = tuned_verdict(result, size, best)
        if tuned is None:
            lines.append(line + ", not searched: a better-tuned single model may do better.")
            continue
        seeds, (wins, ours, theirs, beats) = tuned
        chosen = "; ".join(
            f"seed {s}: {rates[s]['lr']:g} of {', '.join(f'{r:g}' for r in rates[s]['searched'])}"
            for s in seeds
        )
        lines.append(
            f"{line}, and searched on the others ({chosen}). On the searched seed(s) alone "
            f"*{best}* is lower on {against(wins, ours, theirs)}: against a tuned single model "
            + ("the mixture **beats** it." if beats else "the mixture does **not** beat it.")
        )
    return lines


def expert_rate_caveats(result: dict) -> list[str]:
    """Report lines: per data size, the rate each anchored expert's contributor kept where
    it was searched, and the seeds where it was given."""
    lines = []
    for size, seeds in result.get("kept_expert_rates", {}).items():
        searched = {s: f["anchored"] for s, f in seeds.items() if f.get("anchored")}
        given = sorted(s for s, f in seeds.items() if "anchored" in f and s not in searched)
        line = f"- at {size} texts per domain the anchored experts' learning rate was "
        if not searched and given:
            lines.append(line + f"given ({EXPERT_LR:g}) on every seed, not searched "
                         "(`--expert-lr`).")  # fmt: skip
        elif searched:
            kept = "; ".join(f"seed {s}: " + ", ".join(f"{d} {lr:g}" for d, lr in c.items())
                             for s, c in searched.items())  # fmt: skip
            lines.append(line + f"searched by each contributor on its router texts ({kept})"
                         + (f"; on seed(s) {', '.join(map(str, given))} it was given "
                            f"({EXPERT_LR:g})" if given else "") + ".")  # fmt: skip
    return lines
