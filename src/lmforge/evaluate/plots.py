"""Report plots rendered off-screen with matplotlib's Agg canvas, returned as PNG bytes.

No pyplot: each plot builds its own ``Figure`` so nothing global is touched and no display is
needed. Every function returns the PNG file's bytes, ready to embed as base64.
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return buf.getvalue()


def plot_curves(history: Sequence[Mapping[str, float]], x_key: str = "step") -> bytes:
    """Line plot of every numeric key in ``history`` (one dict per logged step) against ``x_key``.

    Loss-like keys (containing "loss") go on the left axis, other metrics on a right axis.
    """
    keys = sorted({k for row in history for k, v in row.items() if k != x_key and _is_number(v)})
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    right = None
    for key in keys:
        points = [(row.get(x_key, i), row[key]) for i, row in enumerate(history) if _is_number(row.get(key))]
        xs, ys = zip(*points)
        target = ax
        if "loss" not in key:
            right = right or ax.twinx()
            target = right
        target.plot(xs, ys, marker="o", markersize=3, label=key, color=f"C{keys.index(key)}")
    ax.set_xlabel(x_key)
    ax.set_ylabel("loss")
    if right is not None:
        right.set_ylabel("metric")
    handles = ax.get_legend_handles_labels()
    if right is not None:
        extra = right.get_legend_handles_labels()
        handles = (handles[0] + extra[0], handles[1] + extra[1])
    ax.legend(*handles, fontsize=8, loc="best")
    ax.set_title("Training curves")
    return _png(fig)


def plot_metric_bars(systems: Mapping[str, Mapping[str, Mapping[str, float]]]) -> bytes:
    """Grouped bars: one group per metric, one bar per system, error bars from the interval.

    ``systems[system][metric]`` is {"value", optional "low", optional "high"}.
    """
    names = list(systems)
    metrics = sorted({m for scores in systems.values() for m in scores})
    fig = Figure(figsize=(max(4.0, 1.2 * len(metrics) * max(1, len(names)) ** 0.5 + 2), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(names))
    for s, name in enumerate(names):
        xs, ys, lo, hi = [], [], [], []
        for m, metric in enumerate(metrics):
            cell = systems[name].get(metric)
            if cell is None:
                continue
            value = cell["value"]
            xs.append(m + (s - (len(names) - 1) / 2) * width)
            ys.append(value)
            lo.append(max(0.0, value - cell.get("low", value)))
            hi.append(max(0.0, cell.get("high", value) - value))
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=name, color=f"C{s}")
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(metrics, rotation=20, fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title("Metrics (error bars: 95% bootstrap interval)")
    return _png(fig)


def plot_confusion(labels: Sequence[str], matrix: Sequence[Sequence[float]]) -> bytes:
    """Heatmap of a confusion matrix (rows = reference, columns = prediction) with counts."""
    n = len(labels)
    fig = Figure(figsize=(1.0 + 0.6 * n + 2, 0.6 * n + 2))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    peak = max((max(row) for row in matrix), default=0) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:g}", ha="center", va="center", color="white" if value > peak / 2 else "black")
    ax.set_title("Confusion matrix")
    return _png(fig)


def plot_lengths(lengths: Mapping[str, Sequence[float]]) -> bytes:
    """Overlaid histograms of lengths (e.g. tokens per prompt / answer), one per named series."""
    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, values) in enumerate(lengths.items()):
        if values:
            ax.hist(list(values), bins=min(30, max(5, len(values) // 2)), alpha=0.6, label=name, color=f"C{i}")
    ax.set_xlabel("length (tokens)")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    ax.set_title("Length distribution")
    return _png(fig)


def plot_reliability(bins: Sequence[Mapping[str, float]]) -> bytes:
    """Reliability diagram from ``calibration.calibration_bins`` output: accuracy per confidence bin."""
    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    used = [b for b in bins if b["count"]]
    ax.bar([(b["low"] + b["high"]) / 2 for b in used], [b["accuracy"] for b in used],
           width=[b["high"] - b["low"] for b in used], edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title("Reliability diagram")
    return _png(fig)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
