"""Line charts as inline SVG (server-rendered, no script): live curves and overlaid runs."""

from __future__ import annotations

import html
import math

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def line_chart(series: dict[str, list[tuple[float, float]]], *, title: str = "", width: int = 460,
               height: int = 170, x_label: str = "step") -> str:
    """An SVG chart of ``{name: [(x, y), ...]}`` (one colour per series, legend below); an empty
    string when no series has a point."""
    points = [(x, y) for pts in series.values() for x, y in pts if _finite(x) and _finite(y)]
    if not points:
        return ""
    left, right, top, bottom = 48, 10, 18, 24
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - abs(y0) * 0.05 - 1e-9, y1 + abs(y1) * 0.05 + 1e-9
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    legend_h = 16 * len(series)
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + legend_h}" '
             f'viewBox="0 0 {width} {height + legend_h}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{left}" y="12" font-size="12" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>',
             _label(left - 4, top + 4, _num(y1), "end"), _label(left - 4, top + plot_h, _num(y0), "end"),
             _label(left, height - 8, _num(x0), "start"), _label(left + plot_w, height - 8, _num(x1), "end"),
             _label(left + plot_w / 2, height - 8, x_label, "middle")]
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        good = [(x, y) for x, y in pts if _finite(x) and _finite(y)]
        if len(good) > 1:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{coords}"/>')
        for x, y in good[-1:] if len(good) > 1 else good:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>')
        ly = height + 12 + 16 * i
        last = f" ({_num(good[-1][1])} at {_num(good[-1][0])})" if good else ""
        parts.append(f'<rect x="{left}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left + 14}" y="{ly}" font-size="11">{html.escape(name + last)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _label(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="10" fill="#555" text-anchor="{anchor}">{html.escape(text)}</text>'


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _num(v: float) -> str:
    return f"{v:.4g}"
