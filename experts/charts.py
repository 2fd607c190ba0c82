"""Small server-rendered SVG charts: a heatmap, bars and a line over versions.

Every label is escaped; the output is safe to embed in a page.
"""

from __future__ import annotations

from html import escape

INK, MUTED, LINE, ACCENT = "#1d2330", "#5c6578", "#e3e6ee", "#3452d6"


def _blue(v: float) -> str:
    v = max(0.0, min(1.0, v))
    r, g, b = (int(247 + (52 - 247) * v), int(248 + (82 - 248) * v), int(251 + (214 - 251) * v))
    return f"rgb({r},{g},{b})"


def heatmap(matrix: list[list[float]], rows: list[str], cols: list[str], title: str, *,
            cell: int = 56, values: bool = True) -> str:  # fmt: skip
    """Cells shaded by value (0 to 1), each with its value written in it (`values`) and in
    its tooltip; small cells (`cell` px) for tall maps such as routing per layer."""
    # Column labels lean up and to the right from their column: room above and beside.
    longest = max((len(c) for c in cols), default=0) * 6.5  # px at font-size 12
    left = 110
    top = 24 + int(longest * 0.58)  # sin 35 degrees
    width = left + cell * len(cols) + 10 + int(longest * 0.82)  # cos 35 degrees
    height = top + cell * len(rows) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" font-family="system-ui" font-size="12">',
        f"<title>{escape(title)}</title>",
    ]
    for j, col in enumerate(cols):
        x = left + j * cell + cell / 2
        out.append(
            f'<text x="{x}" y="{top - 10}" text-anchor="start" fill="{MUTED}" '
            f'transform="rotate(-35 {x} {top - 10})">{escape(col)}</text>'
        )
    for i, (row, cells) in enumerate(zip(rows, matrix, strict=True)):
        y = top + i * cell
        out.append(
            f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end" '
            f'fill="{INK}">{escape(row)}</text>'
        )
        for j, v in enumerate(cells):
            x = left + j * cell
            colour = "#fff" if v > 0.55 else INK
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" rx="4" '
                f'fill="{_blue(v)}"><title>{escape(row)} → {escape(cols[j])}: '
                f"{v:.3f}</title></rect>"
            )
            if values:
                out.append(
                    f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 4}" '
                    f'text-anchor="middle" fill="{colour}">{v:.2f}</text>'
                )
    out.append("</svg>")
    return "".join(out)


PALETTE = ["#3452d6", "#d65a34", "#2e9e6b", "#a03ccf", "#c79a1c", "#2b8fb3", "#b8386b"]
LABEL_CHARS = 28  # longer names are shortened on the chart; the full name is in its tooltip


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def bars(
    values: list[float],
    labels: list[str],
    title: str,
    reference: float | None = None,
    fmt: str = "{:.0%}",
) -> str:
    # Labels lean down and to the left from their bar: room below and to the left.
    longest = max((len(_short(x)) for x in labels), default=0) * 6.5  # px at font-size 12
    bar, gap, height = 34, 18, 180
    left = max(40, int(longest * 0.87) - bar // 2 + 10)  # cos 30 degrees
    width = left + len(values) * (bar + gap) + 20
    bottom = 30 + int(longest * 0.5)  # sin 30 degrees
    top = max(values + [reference or 0, 1e-9])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + bottom}" '
        f'role="img" aria-label="{escape(title)}" font-family="system-ui" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{height}" x2="{width - 10}" y2="{height}" stroke="{LINE}"/>',
    ]
    for i, (v, label) in enumerate(zip(values, labels, strict=True)):
        h = (height - 20) * v / top
        x = left + i * (bar + gap)
        out.append(
            f'<rect x="{x}" y="{height - h}" width="{bar}" height="{h}" rx="3" '
            f'fill="{ACCENT}"><title>{escape(label)}: {fmt.format(v)}</title></rect>'
        )
        out.append(
            f'<text x="{x + bar / 2}" y="{height - h - 5}" text-anchor="middle" '
            f'fill="{INK}">{fmt.format(v)}</text>'
        )
        out.append(
            f'<text x="{x + bar / 2}" y="{height + 16}" text-anchor="end" fill="{MUTED}" '
            f'transform="rotate(-30 {x + bar / 2} {height + 16})"><title>{escape(label)}</title>'
            f"{escape(_short(label))}</text>"
        )
    if reference is not None:
        y = height - (height - 20) * reference / top
        out.append(
            f'<line x1="{left}" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#b25e00" '
            f'stroke-dasharray="4 3"><title>balanced: {fmt.format(reference)}</title>'
            "</line>"
        )
    out.append("</svg>")
    return "".join(out)


def line(points: list[tuple[str, float]], title: str) -> str:
    """Scores over versions, e.g. [("v1", 0.81), ("v2", 0.84)]."""
    if not points:
        return ""
    return lines({"": [v for _, v in points]}, [x for x, _ in points], title)


def lines(series: dict[str, list[float | None]], xlabels: list[str], title: str) -> str:
    """One line per series over the same x labels (None where a series has no value),
    with a legend; it scales to the width of its container."""
    values = [v for ys in series.values() for v in ys if v is not None]
    if not values or not xlabels:
        return ""
    width, height, left, pad = 720, 220, 46, 24
    legend = 18 * len([name for name in series if name])
    lo, hi = min(values), max(values)
    lo, hi = (lo - 0.02, hi + 0.02) if hi - lo < 0.04 else (lo, hi)
    step = (width - left - pad) / max(len(xlabels) - 1, 1)
    every = max(1, len(xlabels) // 12)  # at most about 12 x labels

    def y(v):
        return pad + (height - 2 * pad) * (1 - (v - lo) / (hi - lo))

    total = height + 20 + legend
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total}" width="100%" '
        f'role="img" aria-label="{escape(title)}" font-family="system-ui" font-size="12">',
        f"<title>{escape(title)}</title>",
    ]
    for v in (lo, (lo + hi) / 2, hi):
        out.append(
            f'<line x1="{left}" y1="{y(v)}" x2="{width - pad}" y2="{y(v)}" '
            f'stroke="{LINE}"/><text x="{left - 6}" y="{y(v) + 4}" text-anchor="end" '
            f'fill="{MUTED}">{v:.3f}</text>'
        )
    for i, label in enumerate(xlabels):
        if i % every == 0 or i == len(xlabels) - 1:
            out.append(
                f'<text x="{left + i * step}" y="{height + 10}" text-anchor="middle" '
                f'fill="{MUTED}">{escape(label)}</text>'
            )
    for n, (name, ys) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        points = [(left + i * step, y(v), xlabels[i], v) for i, v in enumerate(ys) if v is not None]
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{x:.1f},{yy:.1f}" for i, (x, yy, _, _) in enumerate(points)
        )
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        for x, yy, label, v in points:
            what = f"{name} " if name else ""
            out.append(
                f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="4" fill="{colour}"><title>'
                f"{escape(what + label)}: {v:.4f}</title></circle>"
            )
        if name:
            ly = height + 30 + 18 * n
            out.append(
                f'<rect x="{left}" y="{ly - 9}" width="12" height="12" rx="2" fill="{colour}"/>'
                f'<text x="{left + 18}" y="{ly + 1}" fill="{INK}">{escape(name)}</text>'
            )
    out.append("</svg>")
    return "".join(out)
