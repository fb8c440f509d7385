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

    Loss-like keys (containing "loss") go on the left axis, other metrics on a right axis; a row
    at step 0 (the base model's evaluation) is drawn like any other point. The legend sits outside
    the axes, right of the plot, so it never covers a line.
    """
    keys = sorted({k for row in history for k, v in row.items() if k != x_key and _is_number(v)})
    fig = Figure(figsize=(7.6, 3.6))
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
    ax.set_xlabel(x_key + (" (0 = base model)" if any(row.get(x_key) == 0 for row in history) else ""))
    ax.set_ylabel("loss")
    if right is not None:
        right.set_ylabel("metric")
    handles = ax.get_legend_handles_labels()
    if right is not None:
        extra = right.get_legend_handles_labels()
        handles = (handles[0] + extra[0], handles[1] + extra[1])
    fig.legend(*handles, fontsize=8, loc="upper left", bbox_to_anchor=(0.9 if right is None else 0.97, 0.9),
               frameon=False)
    ax.set_title("Training curves")
    return _png(fig)


def _scale(name: str) -> str:
    """Which axis a metric shares: metrics of one unit only (loss, perplexity, BLEU 0-100, scores 0-1)."""
    low = name.lower()
    for unit in ("loss", "perplexity", "bleu", "logps", "reward", "margin"):
        if unit in low:
            return unit
    return "score"


def plot_metric_points(systems: Mapping[str, Mapping[str, Mapping[str, float]]]) -> bytes:
    """Each system's value per metric as a point with its interval as a whisker (none where a metric
    has no interval), one panel per unit (scores, loss, perplexity, ...), axes fitted to the data.

    ``systems[system][metric]`` is {"value", optional "low", optional "high"}.
    """
    names = list(systems)
    metrics = sorted({m for scores in systems.values() for m in scores})
    groups: dict[str, list[str]] = {}
    for metric in metrics:
        groups.setdefault(_scale(metric), []).append(metric)
    fig = Figure(figsize=(7.6, 0.9 + 0.32 * len(metrics) * max(1, len(names)) ** 0.5 + 0.5 * len(groups)))
    axes = fig.subplots(len(groups), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [max(1, len(g)) for g in groups.values()]})[:, 0]
    for ax, (unit, group) in zip(axes, groups.items()):
        for s, name in enumerate(names):
            offset = (s - (len(names) - 1) / 2) * 0.25
            for row, metric in enumerate(group):
                cell = systems[name].get(metric)
                if cell is None:
                    continue
                y = row + offset
                if "low" in cell and "high" in cell:
                    ax.plot([cell["low"], cell["high"]], [y, y], color=f"C{s}", linewidth=2)
                ax.plot([cell["value"]], [y], "o", color=f"C{s}", label=name if row == 0 else None)
        ax.set_yticks(range(len(group)))
        ax.set_yticklabels(group, fontsize=8)
        ax.set_ylim(-0.6, len(group) - 0.4)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(unit, fontsize=8)
    handles, labels = [], []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(0.92, 0.95), frameon=False)
    axes[0].set_title("Metrics (whiskers: 95% bootstrap interval)")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return _png(fig)


def plot_changes(changes: Sequence[Mapping[str, float]]) -> bytes:
    """Forest plot of after - before per metric: the change as a point, its paired 95% interval as a
    whisker, the zero line; one panel per unit. Green: better beyond noise; red: worse beyond noise;
    grey: within noise. ``changes``: ``{"metric", "difference", "low", "high", "within_noise",
    "lower_is_better"}`` rows."""
    groups: dict[str, list[Mapping[str, float]]] = {}
    for change in changes:
        groups.setdefault(_scale(change["metric"]), []).append(change)
    fig = Figure(figsize=(7.6, 0.9 + 0.35 * len(changes) + 0.5 * len(groups)))
    axes = fig.subplots(len(groups), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [max(1, len(g)) for g in groups.values()]})[:, 0]
    for ax, (unit, group) in zip(axes, groups.items()):
        for row, c in enumerate(group):
            better = (c["difference"] < 0) == bool(c.get("lower_is_better"))
            color = "0.55" if c.get("within_noise") else ("tab:green" if better else "tab:red")
            ax.plot([c["low"], c["high"]], [row, row], color=color, linewidth=2)
            ax.plot([c["difference"]], [row], "o", color=color)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(group)))
        ax.set_yticklabels([c["metric"] for c in group], fontsize=8)
        ax.set_ylim(-0.6, len(group) - 0.4)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(f"change after - before ({unit})", fontsize=8)
    axes[0].set_title("Change with its paired 95% interval (green better, red worse, grey within noise)", fontsize=9)
    fig.tight_layout()
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


def plot_lengths(lengths: Mapping[str, Sequence[float]], title: str = "Length distribution",
                 xlabel: str = "length (tokens)") -> bytes:
    """Overlaid histograms of one kind of length (e.g. held-out scored tokens), one per named series."""
    fig = Figure(figsize=(6.4, 3.0))
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, values) in enumerate(lengths.items()):
        if values:
            ax.hist(list(values), bins=min(30, max(5, len(values) // 2)), alpha=0.6, label=name, color=f"C{i}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    ax.set_title(title)
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
