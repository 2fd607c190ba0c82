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


def heatmap(matrix: list[list[float]], rows: list[str], cols: list[str], title: str) -> str:
    # Column labels lean up and to the right from their column: room above and beside.
    longest = max((len(c) for c in cols), default=0) * 6.5  # px at font-size 12
    cell, left = 56, 110
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
    for i, (row, values) in enumerate(zip(rows, matrix, strict=True)):
        y = top + i * cell
        out.append(
            f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end" '
            f'fill="{INK}">{escape(row)}</text>'
        )
        for j, v in enumerate(values):
            x = left + j * cell
            colour = "#fff" if v > 0.55 else INK
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" rx="4" '
                f'fill="{_blue(v)}"><title>{escape(row)} → {escape(cols[j])}: '
                f"{v:.3f}</title></rect>"
            )
            out.append(
                f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 4}" '
                f'text-anchor="middle" fill="{colour}">{v:.2f}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def bars(
    values: list[float],
    labels: list[str],
    title: str,
    reference: float | None = None,
    fmt: str = "{:.0%}",
) -> str:
    bar, gap, left, height = 34, 18, 40, 180
    width = left + len(values) * (bar + gap) + 20
    top = max(values + [reference or 0, 1e-9])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 60}" '
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
            f'transform="rotate(-30 {x + bar / 2} {height + 16})">{escape(label)}</text>'
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
    width, height, left, pad = 560, 220, 46, 24
    if not points:
        return ""
    lo = min(v for _, v in points)
    hi = max(v for _, v in points)
    lo, hi = (lo - 0.02, hi + 0.02) if hi - lo < 0.04 else (lo, hi)
    step = (width - left - pad) / max(len(points) - 1, 1)

    def y(v):
        return pad + (height - 2 * pad) * (1 - (v - lo) / (hi - lo))

    coords = [(left + i * step, y(v)) for i, (_, v) in enumerate(points)]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}" '
        f'role="img" aria-label="{escape(title)}" font-family="system-ui" font-size="12">',
        f"<title>{escape(title)}</title>",
    ]
    for v in (lo, (lo + hi) / 2, hi):
        out.append(
            f'<line x1="{left}" y1="{y(v)}" x2="{width - pad}" y2="{y(v)}" '
            f'stroke="{LINE}"/><text x="{left - 6}" y="{y(v) + 4}" text-anchor="end" '
            f'fill="{MUTED}">{v:.3f}</text>'
        )
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{yy:.1f}" for i, (x, yy) in enumerate(coords))
    out.append(f'<path d="{path}" fill="none" stroke="{ACCENT}" stroke-width="2.5"/>')
    for (label, v), (x, yy) in zip(points, coords, strict=True):
        out.append(
            f'<circle cx="{x}" cy="{yy}" r="4" fill="{ACCENT}"><title>{escape(label)}: '
            f"{v:.4f}</title></circle>"
        )
        out.append(
            f'<text x="{x}" y="{height + 10}" text-anchor="middle" fill="{MUTED}">'
            f"{escape(label)}</text>"
        )
    out.append("</svg>")
    return "".join(out)
