"""Tables, plots and the JSON file of bench/paper.py's results."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.paper_plots import plots

SYSTEM_ORDER = [
    "monolithic",
    "oracle",
    "uniform",
    "gate-dense",
    "gate-top2",
    "gate-top1",
    "features-only",
    "no-entropy",
    "no-balance",
    "no-routing-ce",
    "strong-entropy",
]
DESCRIPTIONS = {
    "monolithic": "one model trained centrally on all domains, same trainable-parameter budget",
    "oracle": "each expert alone on its own domain (routing by the true domain)",
    "uniform": "all experts, equal weights, no gate",
    "gate-dense": "MoECollab gate as the hub trains it, all 4 experts mixed",
    "gate-top2": "MoECollab gate as the hub trains it, top-2 (every gate below is top-2)",
    "gate-top1": "MoECollab gate as the hub trains it, top-1",
    "features-only": "the paper's gate: reads the features only, experts uncalibrated, router "
    "examples drawn as they come (the hub's gate reads calibrated head experts and draws "
    "domains in balance, docs/routing.md)",
    "no-entropy": "top-2, gate trained without the two entropy terms",
    "no-balance": "top-2, gate trained without load balancing",
    "no-routing-ce": "top-2, gate trained without the routing cross-entropy",
    "strong-entropy": "top-2, batch-entropy weight raised from 0.01 to 0.5",
}


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    m, s = mean_std(values)
    if m != m:  # NaN
        return "n/a"
    if len(values) > 1:
        return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"
    return f"{m * scale:.{digits}f}"


def collect(kind: dict, system: str, path: list[str]) -> list[float]:
    out = []
    for seed in kind["seeds"]:
        node = seed["systems"].get(system)
        for key in path:
            node = None if node is None else node.get(key)
        out.append(node)
    return [v for v in out if v is not None]


def quality_table(kind: dict) -> list[str]:
    domains = kind["seeds"][0]["expert_names"]
    head = ["system", "accuracy %", "macro-F1 %"] + [f"{d} acc %" for d in domains]
    head += ["load entropy", "experts < 1 %"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system in SYSTEM_ORDER:
        if system not in kind["seeds"][0]["systems"]:
            continue
        cells = [
            system,
            fmt(collect(kind, system, ["overall", "accuracy"])),
            fmt(collect(kind, system, ["overall", "macro_f1"])),
        ]
        cells += [fmt(collect(kind, system, ["domains", d, "accuracy"])) for d in domains]
        ent = collect(kind, system, ["utilisation", "entropy"])
        under = collect(kind, system, ["utilisation", "under_1pct"])
        cells += [fmt(ent, 1.0, 3) if ent else "n/a", fmt(under, 1.0, 1) if under else "n/a"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def f1_table(kind: dict) -> list[str]:
    domains = kind["seeds"][0]["expert_names"]
    head = ["system"] + [f"{d} macro-F1 %" for d in domains]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system in SYSTEM_ORDER:
        if system in kind["seeds"][0]["systems"]:
            cells = [system] + [
                fmt(collect(kind, system, ["domains", d, "macro_f1"])) for d in domains
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def cost_table(kind: dict) -> list[str]:
    seed0 = kind["seeds"][0]
    flops, timing = seed0["flops"], seed0["time_per_example"]
    rows = [
        "| system | GFLOPs / example | × dense | × monolithic | ms / example | × dense |"
        " × monolithic |",
        "|---|---|---|---|---|---|---|",
    ]
    for system in SYSTEM_ORDER:
        if system not in flops:
            continue
        f = flops[system]
        t = timing.get(system)
        cells = [
            system,
            f"{f / 1e9:.3f}",
            f"{f / flops['gate-dense']:.2f}",
            f"{f / flops['monolithic']:.2f}",
        ]
        if t is not None:
            cells += [
                f"{t * 1000:.1f}",
                f"{t / timing['gate-dense']:.2f}",
                f"{t / timing['monolithic']:.2f}",
            ]
        else:
            cells += ["(as top-2)", "", ""]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def training_table(kind: dict) -> list[str]:
    rows = [
        "| model | training examples | trainable parameters | seconds | GFLOPs |"
        " share of monolithic GFLOPs |",
        "|---|---|---|---|---|---|",
    ]
    costs = kind["seeds"][0]["train_cost"]
    mono = costs["monolithic"]["flops"]
    for name, c in costs.items():
        rows.append(
            f"| {name} | {c['examples']:,} | {c['parameters']:,} | {c['seconds']:.1f} | "
            f"{c['flops'] / 1e9:,.0f} | {c['flops'] / mono:.2f} |"
        )
    return rows


def delta(kind: dict, a: str, b: str, path=("overall", "accuracy")) -> tuple[float, float]:
    """Mean and std over seeds of (a - b), in points."""
    diffs = [
        (sa["systems"][a][path[0]][path[1]] - sa["systems"][b][path[0]][path[1]]) * 100
        for sa in kind["seeds"]
    ]
    return mean_std(diffs)


def kept(kind: dict, system: str, domain: str) -> float:
    """Mean over seeds of the share of `domain`'s traffic its own expert gets, in %."""
    values = []
    for seed in kind["seeds"]:
        report = seed["systems"][system]
        i = report["domain_order"].index(domain)
        values.append(report["routing_matrix"][i][i] * 100)
    return mean_std(values)[0]


def claims(kind_name: str, kind: dict) -> list[str]:
    g = "gate-top2"
    lines = []
    d_mono, s_mono = delta(kind, g, "monolithic")
    d_uni, s_uni = delta(kind, g, "uniform")
    d_orc, s_orc = delta(kind, g, "oracle")
    word = lambda d: "above" if d > 0 else "below"  # noqa: E731
    lines.append(
        f"- **Gate against baselines ({kind_name}).** Top-2 routing scores "
        f"{abs(d_mono):.1f} ± {s_mono:.1f} points {word(d_mono)} the monolithic baseline and "
        f"{abs(d_uni):.1f} ± {s_uni:.1f} points {word(d_uni)} the uniform ensemble in overall "
        f"accuracy; it is {abs(d_orc):.1f} ± {s_orc:.1f} points {word(d_orc)} oracle routing. "
        "The paper reports +3 to 7 % over its baselines."
    )
    if "features-only" in kind["seeds"][0]["systems"]:
        d_feat, s_feat = delta(kind, g, "features-only")
        order = kind["seeds"][0]["systems"][g]["domain_order"]
        worst = min(order, key=lambda d: kept(kind, "features-only", d))
        lines.append(
            f"- **What the hub's routing adds ({kind_name}).** Against the paper's gate "
            f"(features only, experts uncalibrated, router examples as they come), the hub's "
            f"top-2 gate is {abs(d_feat):.1f} ± {s_feat:.1f} points {word(d_feat)}. The "
            f"domain the paper's gate routes worst, {worst}, keeps "
            f"{kept(kind, 'features-only', worst):.1f} % of its traffic with it and "
            f"{kept(kind, g, worst):.1f} % with the hub's."
        )
    f = kind["seeds"][0]["flops"]
    t = kind["seeds"][0]["time_per_example"]
    d1, s1 = delta(kind, "gate-top1", "gate-dense")
    d2, s2 = delta(kind, "gate-top2", "gate-dense")
    lines.append(
        f"- **Top-k against the dense ensemble ({kind_name}).** Counted FLOPs per example: "
        f"top-1 {f['gate-top1'] / f['gate-dense']:.2f} × and top-2 "
        f"{f['gate-top2'] / f['gate-dense']:.2f} × dense "
        f"({(1 - f['gate-top1'] / f['gate-dense']) * 100:.0f} % and "
        f"{(1 - f['gate-top2'] / f['gate-dense']) * 100:.0f} % less); measured time top-1 "
        f"{t['gate-top1'] / t['gate-dense']:.2f} ×, top-2 {t['gate-top2'] / t['gate-dense']:.2f}"
        f" ×. Accuracy changes by {d1:+.1f} ± {s1:.1f} (top-1) and {d2:+.1f} ± {s2:.1f} (top-2)"
        f" points. Against the monolithic model, top-1 costs "
        f"{f['gate-top1'] / f['monolithic']:.2f} × its FLOPs. The paper reports 34 % lower "
        "computational requirements."
    )
    ent = {
        s: mean_std(collect(kind, s, ["utilisation", "entropy"]))[0]
        for s in ("no-entropy", "gate-top2", "strong-entropy")
    }
    rel = (ent["gate-top2"] / ent["no-entropy"] - 1) * 100
    rel_strong = (ent["strong-entropy"] / ent["no-entropy"] - 1) * 100
    d_strong, s_strong = delta(kind, "strong-entropy", "no-entropy")
    d_def, s_def = delta(kind, "gate-top2", "no-entropy")
    lines.append(
        f"- **Entropy regularisation and utilisation ({kind_name}).** Normalised load entropy: "
        f"{ent['no-entropy']:.3f} without the entropy terms, {ent['gate-top2']:.3f} with the "
        f"default weights ({rel:+.1f} %), {ent['strong-entropy']:.3f} with the batch-entropy "
        f"weight at 0.5 ({rel_strong:+.1f} %). Accuracy moves by {d_def:+.1f} ± {s_def:.1f} "
        f"and {d_strong:+.1f} ± {s_strong:.1f} points. The paper reports 14 % higher expert "
        "utilisation."
    )
    return lines


def write_report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    images = plots(results, out)
    m = results["machine"]
    lines = [
        "# Results: the multi-domain benchmark",
        "",
        "Generated by `bench/paper.py`; do not edit by hand. Regenerate with:",
        "",
        "```bash",
        f".venv/bin/{results['command'].replace('python ', 'python ', 1)}",
        "```",
        "",
        f"Machine: {m['cpu']}, {m['threads']} CPU threads, device `{m['device']}`, "
        f"torch {m['torch']}, Python {m['python']}; profile `{results['profile']}`; "
        f"run time {results['seconds'] / 60:.1f} min (features cached from earlier runs are "
        "reused). Base model "
        f"`{results['base_model']}` (frozen), max length {results['max_length']} tokens. "
        "Every figure is the mean ± standard deviation over seeds unless marked seed 0; "
        "all figures are in `results.json`.",
        "",
        "Four contributors each train an expert on their own domain only. A prediction counts "
        "only if both the domain and the label are right (the union label space has "
        "35 distinct labels). Systems:",
        "",
    ]
    lines += [f"- `{s}`: {d}" for s, d in DESCRIPTIONS.items()]
    for kind_name, kind in results["kinds"].items():
        seeds = len(kind["seeds"])
        sizes = ", ".join(
            f"{n} {s['train']:,} / {s['router']:,} / {s['eval']:,}"
            for n, s in kind["sizes"].items()
        )
        lines += [
            "",
            f"## `{kind_name}` experts ({seeds} seed{'s' if seeds > 1 else ''})",
            "",
            f"Examples per domain, train / router / eval: {sizes}.",
            "",
            "### What the figures say",
            "",
            *claims(kind_name, kind),
            "",
            "### Accuracy, macro-F1 and utilisation",
            "",
            *quality_table(kind),
            "",
            *f1_table(kind),
            "",
            "### Inference cost (seed 0, one run)",
            "",
            "Counted FLOPs cover the encoder's matrix products (mean "
            f"{kind['eval_tokens_mean']:.0f} tokens per eval example), LoRA branches, heads and "
            "the gate. Time is measured on the same machine in one run, sparse execution, "
            "batches of 64.",
            "",
            *cost_table(kind),
            "",
            "### Training cost per contributor against the monolithic model (seed 0)",
            "",
            "FLOPs: base features of the training texts plus 6 × parameters × examples × epochs "
            "for heads; 3 × the adapted forward pass × examples × epochs for LoRA.",
            "",
            *training_table(kind),
        ]
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}](img/{name})" for name in images]
    analysis = Path(__file__).with_name("paper_analysis.md")
    if analysis.exists():
        lines += ["", analysis.read_text().strip()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
