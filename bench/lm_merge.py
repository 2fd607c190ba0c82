"""Merging the language-model benchmark's runs (one seed, data size and set of families each)
into one result: figures per data size over its seeds, the size a claim is made at, and
the targets (bench/lm_report.py writes them out)."""

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
    """system -> {"domains": {d: (mean, std)}, "overall": (mean, std), "seeds": n, ...} over
    the seeds that ran it."""
    systems = list(dict.fromkeys(s for run in per_seed for s in run["systems"]))
    out = {}
    for system in systems:
        runs = [s["systems"][system] for s in per_seed if system in s["systems"]]
        entry = {
            "domains": {d: mean_std([r["domains"][d] for r in runs]) for d in DOMAINS},
            "overall": mean_std([r["overall"]["perplexity"] for r in runs]),
            "seeds": len(runs),
        }
        if "routing_accuracy" in runs[0]["overall"]:
            entry["routing_accuracy"] = mean_std([r["overall"]["routing_accuracy"] for r in runs])
        if "utilisation" in runs[0]:
            entry["load_entropy"] = mean_std([r["utilisation"]["entropy"] for r in runs])
        out[system] = entry
    return out


def merge_runs(runs: list) -> dict:
    """Runs (dicts, or paths of their JSON files) -> the benchmark's result."""
    runs = [json.loads(Path(r).read_text()) if not isinstance(r, dict) else r for r in runs]
    by_size: dict[int, dict[int, dict]] = {}
    extras, costs, rates, expert_rates, ranks = {}, {}, {}, {}, {}
    for run in sorted(runs, key=lambda r: (r["meta"]["train"], r["seed"])):
        size, seed = run["meta"]["train"], run["seed"]
        merged = by_size.setdefault(size, {}).setdefault(seed, {"seed": seed, "systems": {}})
        for system, figures in run["systems"].items():  # the better-searched run's figures
            rank = _rank(run, system)
            if rank <= ranks.get((size, seed, system), math.inf):
                merged["systems"][system], ranks[size, seed, system] = figures, rank
        for family in {"anchored", "coordinated"} & set(run["families"]):
            chosen = run["extras"].get("expert_rates", {}).get(family)
            kept = expert_rates.setdefault(size, {}).setdefault(seed, {})
            if chosen or family not in kept:
                kept[family] = {d: c["lr"] for d, c in chosen.items()} if chosen else None
        fair = run["extras"].get("fair_multitask")
        if fair:  # the rate kept for the seed, and the rates tried over all its runs
            entry = rates.setdefault(size, {}).setdefault(seed, {"lr": fair["lr"], "searched": []})
            if ranks[size, seed, "fair multitask LoRA"] == _rank(run, "fair multitask LoRA"):
                entry["lr"] = fair["lr"]  # this run's figures are the ones kept
            entry["searched"] = sorted({*entry["searched"], *map(float, fair["router_perplexity"])})
        for key, value in run["cost"].items():
            costs.setdefault(size, {}).setdefault(key, []).append(value)
        if seed == 0:
            for key, value in run["extras"].items():
                extras.setdefault(key, {})[size] = value
    sizes = {
        size: {
            "seeds": sorted(seeds),
            "per_seed": list(seeds.values()),
            "summary": aggregate(list(seeds.values())),
        }  # fmt: skip
        for size, seeds in sorted(by_size.items())
    }
    claim = claim_size(sizes, rates)
    first = sorted(sizes)[0]
    result = {
        "claim_size": claim,
        "summary": sizes[claim]["summary"],
        "sizes": sizes,
        "runs": [
            {
                "train": r["meta"]["train"],
                "seed": r["seed"],
                "families": r["families"],
                "command": r["meta"]["command"],
                "minutes": r["meta"]["seconds"] / 60,
                "machine": r["meta"]["machine"],
            }
            for r in runs
        ],  # fmt: skip
        "meta": {
            **runs[0]["meta"],
            "seeds": len(sizes[claim]["seeds"]),
            "seconds": sum(r["meta"]["seconds"] for r in runs),
        },  # fmt: skip
        "training": {size: {k: _mean(v) for k, v in c.items()} for size, c in costs.items()},
        "fair_rates": rates,
        "kept_expert_rates": expert_rates,
    }
    for key, per_size in extras.items():  # seed 0's figures: the claim size's, else the first
        result[key] = per_size.get(claim, per_size.get(first, next(iter(per_size.values()))))
    result["targets"] = targets(result)
    return result


def _rank(run: dict, system: str) -> float:
    """Where two runs of a seed measured a system, the lower rank's figures count (on a tie,
    the later file's): for the fair single model, the router perplexity of the rate its
    run kept, so that a search can be spread over runs; for a family of experts, 0 where
    the run searched their learning rate, else 1."""
    if system == "fair multitask LoRA":
        fair = run["extras"].get("fair_multitask")
        return fair["router_perplexity"][f"{fair['lr']:g}"] if fair else math.inf
    family = system.split(" experts, ")[0] if " experts, " in system else None
    return 0.0 if run["extras"].get("expert_rates", {}).get(family) else 1.0


def _mean(values) -> float:
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    return statistics.fmean(flat) if flat else math.nan


def compositions(summary: dict) -> list[str]:
    """The systems a hub can build (routed compositions; no oracle, no single model)."""
    return [
        s for s in summary
        if ("experts, " in s and "oracle" not in s) or s.startswith(("learned", "centroid"))
        or s.startswith("prefix-likelihood")
    ]  # fmt: skip


def best_of(summary: dict, systems: list[str]) -> str:
    """The lowest overall perplexity among `systems` measured at the most seeds (a system
    run at one seed is not compared with means over three)."""
    most = max(summary[s]["seeds"] for s in systems)
    return min((s for s in systems if summary[s]["seeds"] == most),
               key=lambda s: summary[s]["overall"][0])  # fmt: skip


def wins_over(summary: dict, system: str, other: str) -> list[str]:
    ours, theirs = summary[system]["domains"], summary[other]["domains"]
    return [d for d in DOMAINS if ours[d][0] < theirs[d][0]]


def verdict(summary: dict, best: str) -> tuple[list[str], float, float, bool]:
    """`best` against the fair multitask LoRA: the domains it is lower on, both overall
    perplexities, and whether it beats it (3 of 4 domains and overall)."""
    wins = wins_over(summary, best, "fair multitask LoRA")
    ours, theirs = summary[best]["overall"][0], summary["fair multitask LoRA"]["overall"][0]
    return wins, ours, theirs, len(wins) >= 3 and ours < theirs


def against(wins: list[str], ours: float, theirs: float) -> str:
    """A verdict's figures, as the report and the targets write them."""
    return (f"{len(wins)} of 4 ({', '.join(wins) or 'none'}); overall {ours:.3f} against "
            f"{theirs:.3f} ({100 * (ours / theirs - 1):+.1f} %)")  # fmt: skip


def searched_seeds(result: dict, size: int) -> tuple[list[int], list[int]]:
    """The seeds at `size` whose fair multitask LoRA had its learning rate searched (two
    rates or more), and those where it was given."""
    rates = result.get("fair_rates", {}).get(size, {})
    searched = sorted(s for s, r in rates.items() if len(r["searched"]) > 1)
    return searched, sorted(set(rates) - set(searched))


def tuned_verdict(result: dict, size: int, best: str):
    """The verdict on the seeds with a searched learning rate alone, where the other seeds'
    rate was given: (seeds, verdict), else None (all searched, or none)."""
    searched, given = searched_seeds(result, size)
    if not searched or not given:
        return None
    summary = aggregate([r for r in result["sizes"][size]["per_seed"] if r["seed"] in searched])
    if best not in summary or "fair multitask LoRA" not in summary:
        return None
    return searched, verdict(summary, best)


def diverged(summary: dict) -> str | None:
    """The system the fair multitask LoRA is worse than overall where no trained model
    should be (the base model, or the anchor alone): its training diverged, and it is no
    baseline at that size. None when it did not (or nothing to judge it by)."""
    fair = summary.get("fair multitask LoRA")
    for reference in ("base model", "anchor alone"):
        if fair and reference in summary and fair["overall"][0] > summary[reference]["overall"][0]:
            return reference
    return None


def claim_size(sizes: dict, rates: dict | None = None) -> int:
    """The data size the targets are judged at: the one with the most seeds where the best
    composition beats the fair single model on 3 of 4 domains and overall (on the seeds
    where its learning rate was searched too, given `rates`: `fair_rates`); else the one
    with the most seeds (the larger on a tie)."""

    def beats(size):
        summary = sizes[size]["summary"]
        if "fair multitask LoRA" not in summary or not compositions(summary):
            return False
        if diverged(summary):
            return False
        best = best_of(summary, compositions(summary))
        tuned = tuned_verdict({"sizes": sizes, "fair_rates": rates or {}}, size, best)
        return verdict(summary, best)[3] and (tuned is None or tuned[1][3])

    ranked = sorted(sizes, key=lambda s: (beats(s), len(sizes[s]["seeds"]), s))
    return ranked[-1]


def targets(result: dict) -> list:
    """(target, measured, met) for each target the merged runs can judge."""
    summary, size = result["summary"], result["claim_size"]
    out = []
    if "fair multitask LoRA" in summary and compositions(summary):
        best = best_of(summary, compositions(summary))
        wins, ours, theirs, beats = verdict(summary, best)
        measured = f"{best}: {against(wins, ours, theirs)}"
        tuned = tuned_verdict(result, size, best)
        if tuned:  # the claim must hold against the single model with a searched rate too
            seeds, (wins, ours, theirs, tuned_beats) = tuned
            seeds = ", ".join(map(str, seeds))
            measured += f"; on the seed(s) with a searched rate ({seeds}): " + against(
                wins, ours, theirs
            )
            beats = beats and tuned_beats
        out.append((
            f"the best composition beats the fair multitask LoRA on at least 3 of 4 domains and "
            f"overall ({size} texts per domain, {summary[best]['seeds']} seeds)",
            measured,
            beats,
        ))  # fmt: skip
    token = [s for s in summary if "token" in s]
    sequence = [s for s in compositions(summary) if "token" not in s]
    if token and sequence:
        best_token, best_seq = best_of(summary, token), best_of(summary, sequence)
        gap = summary[best_token]["overall"][0] / summary[best_seq]["overall"][0] - 1
        out.append((
            "per-token routing within 2 % of the best sequence-level system's perplexity",
            f"{best_token} {100 * gap:+.2f} % against {best_seq}",
            gap <= 0.02,
        ))  # fmt: skip
    timing = result.get("token_timing")
    if timing:
        ratio = timing["token top-2"]["generate_ratio"]
        out.append(("top-2 per-token generation at least 0.6x the base's tokens/s (CPU)",
                    f"{ratio:.2f}x", ratio >= 0.6))  # fmt: skip
    added = result.get("add_expert")
    if added:
        out.append((
            f"adding an expert to a per-token composition of {added['experts']} under 2 minutes",
            f"{added['seconds']:.1f} s (rows {added['rows_seconds']:.1f} s, tuning "
            f"{added['tuning_seconds']:.1f} s)",
            added["seconds"] < 120,
        ))  # fmt: skip
    if "learned top-1" in summary and "timing" in result:
        out += present_targets(result)
    return out


def present_targets(result: dict) -> list:
    """(target, measured, met) of the first systems (attention experts on the plain base)."""
    summary, timing, gate_seconds = result["summary"], result["timing"], result["gate_seconds"]
    cost = result["training"][result["claim_size"]]
    trained_on = result["claim_size"]
    per_text = cost["expert_seconds"] / trained_on
    expert_seconds = per_text * 200  # scaled to a contributor's 200 texts
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
