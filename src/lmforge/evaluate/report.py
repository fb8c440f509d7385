"""The before -> after report of a run: ``report.md`` for people, ``results.json`` for programs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from lmforge.atomic import atomic_write_text

# Metric-name parts for which lower is better; higher is better for every other score.
_LOWER_IS_BETTER = {"loss", "perplexity", "error", "ece"}


def write_report(run_dir: str | Path, report: Mapping[str, Any]) -> Path:
    """Write ``run_dir/results.json`` and ``run_dir/report.md`` atomically; return the report.md path.

    report: ``{"model", "method", "objective", "data": {...}, "before": metrics | None,
    "after": metrics, "samples": [{"prompt", "reference", "before"?, "after"}],
    "train": {"steps", "best_step", ...}}`` plus any other JSON-serialisable keys (kept in
    results.json). Non-finite floats (an overflowed perplexity) become ``null`` in results.json
    so it stays strict JSON.
    """
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "results.json", json.dumps(_finite(dict(report)), indent=2, allow_nan=False, default=str) + "\n")
    return atomic_write_text(run_dir / "report.md", render_report(report))


def render_report(report: Mapping[str, Any]) -> str:
    """The markdown text of ``report.md`` (see :func:`write_report` for the report's keys)."""
    lines = [f"# lmforge run: {report.get('model', '?')}", ""]
    for key in ("model", "method", "objective"):
        if report.get(key) is not None:
            lines.append(f"- **{key}**: {report[key]}")
    for section in ("data", "parameters", "train"):
        values = report.get(section) or {}
        if values:
            lines.append(f"- **{section}**: " + ", ".join(f"{k} {_cell(v)}" for k, v in values.items()))
    before, after = report.get("before") or {}, report.get("after") or {}
    lines += ["", "## Metrics (held-out data)", "", _markdown_table(comparison_rows(before, after)), ""]
    for title, metrics in (("before", before), ("after", after)):
        lines += _class_sections(title, metrics)
    samples = report.get("samples") or []
    if samples:
        lines += ["## Sample generations", ""]
        for i, sample in enumerate(samples, 1):
            lines.append(f"### Sample {i}")
            for key in ("prompt", "reference", "before", "after"):
                if key in sample:
                    lines += ["", f"**{key}**", "", _fenced(str(sample[key]))]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_comparison(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """A plain-text table ``metric | before | after | change`` of the numeric metrics.

    ``change`` is after - before, with ``(better)`` / ``(worse)`` when the direction is known
    (loss / perplexity go down, scores go up). Metrics missing on one side show ``-``.
    """
    rows = comparison_rows(before or {}, after)
    header = ("metric", "before", "after", "change")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip(" |") for row in rows]
    return "\n".join(out)


def comparison_rows(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, before, after, change) strings for each numeric metric of ``after`` then ``before``."""
    names = [k for k in after if _number(after[k])] + [k for k in before if _number(before[k]) and k not in after]
    rows = []
    for name in names:
        b, a = before.get(name), after.get(name)
        rows.append((name, _cell(b) if _number(b) else "-", _cell(a) if _number(a) else "-", _change(name, b, a)))
    return rows


def _change(name: str, before: Any, after: Any) -> str:
    if not (_number(before) and _number(after)) or name == "eval_examples":
        return ""
    if not (math.isfinite(before) and math.isfinite(after)):
        return ""
    delta = after - before
    if delta == 0:
        return "0"
    lower = any(part in _LOWER_IS_BETTER for part in name.lower().split("_"))
    verdict = "better" if (delta < 0) == lower else "worse"
    return f"{delta:+.4g} ({verdict})"


def _class_sections(title: str, metrics: Mapping[str, Any]) -> list[str]:
    per_class, matrix, labels = metrics.get("per_class"), metrics.get("confusion_matrix"), metrics.get("labels")
    if not per_class:
        return []
    rows = [(name, _cell(v["precision"]), _cell(v["recall"]), _cell(v["f1"]), str(v["support"]))
            for name, v in per_class.items()]
    lines = [f"## Per class ({title})", "", _markdown_table(rows, ("label", "precision", "recall", "f1", "support")), ""]
    if matrix and labels:
        head = ("gold \\ predicted", *labels)
        lines += [_markdown_table([(labels[i], *map(str, row)) for i, row in enumerate(matrix)], head), ""]
    return lines


def _markdown_table(rows: list[tuple], header: tuple = ("metric", "before", "after", "change")) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fenced(text: str) -> str:
    if not text.strip():
        return "*(empty)*"
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}\n{text}\n{fence}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
