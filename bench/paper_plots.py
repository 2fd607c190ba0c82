"""The plots of bench/paper.py's report: the routing matrix and the experts' load."""

from __future__ import annotations

from pathlib import Path


def plots(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    written = []
    for kind_name, kind in results["kinds"].items():
        seed0 = kind["seeds"][0]
        names = seed0["expert_names"]
        matrix = seed0["systems"]["gate-top2"]["routing_matrix"]
        fig, ax = plt.subplots(figsize=(5.2, 4.2), dpi=110)
        im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), [f"{n}\nexpert" for n in names], fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=9)
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if v > 0.5 else "#1d2330",
                )
        ax.set_title(f"Routing matrix, {kind_name} experts, top-2 (seed 0)", fontsize=10)
        ax.set_ylabel("domain of the example")
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        path = img / f"routing-matrix-{kind_name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path.name)

        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        variants = [
            ("no-entropy", "#9aa5b8"),
            ("gate-top2", "#3452d6"),
            ("strong-entropy", "#1f8a4c"),
        ]
        width = 0.26
        for v, (system, colour) in enumerate(variants):
            loads = seed0["systems"][system]["utilisation"]["load"]
            ent = seed0["systems"][system]["utilisation"]["entropy"]
            xs = [i + (v - 1) * width for i in range(len(names))]
            ax.bar(xs, loads, width, color=colour, label=f"{system} (H/log N = {ent:.3f})")
        ax.axhline(1 / len(names), color="#b25e00", lw=1, ls="--", label="balanced")
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("share of routed traffic")
        ax.set_title(
            f"Expert load with and without entropy regularisation ({kind_name})", fontsize=10
        )
        ax.legend(fontsize=8, frameon=False)
        fig.tight_layout()
        path = img / f"utilisation-{kind_name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path.name)
    return written
