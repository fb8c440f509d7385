"""Self-contained HTML report (plots embedded as base64 PNG) and its markdown summary.

The report dict is shared by train, eval and compare runs; every key is optional:

    title: str                       page title
    facts: [[label, sentence]]        the run in words, shown first (run folder, data, method, exports)
    metrics: {name: float | {"value", "low", "high"}}            one system's scores
    systems: {system: {metric: float | {"value", "low", "high"}}} several systems (before/after,
             compare); if absent, "before" and "after" metric dicts are read as two systems
    history: [{"step": int, "loss": float, "eval_token_f1": float, ...}]  logged steps -> curves
    confusion: {"labels": [str], "matrix": [[count]]}  rows = reference, columns = prediction
    calibration: {"ece": float, "bins": calibration.calibration_bins(...)} -> reliability diagram
    lengths: {series name: [int]}    token lengths -> histogram; or {title: {series name: [int]}} ->
             one histogram per title (never mixing units)
    samples: [{"prompt", "reference", "before", "after", "flags"?: {side: [flag]}} | {..., "output"}]
    paired: [{"a", "b", "metric", "difference", "low", "high", "p_value", "within_noise"}]
    changes: [{"metric", "difference", "low", "high", "p_value", "within_noise", "lower_is_better"}]
             one system's change (after - before) per metric -> table + forest plot
    sample_flags: [str]              lines counting flagged sample answers (repetitive, truncated)
    table: [{column: value}]         any extra table (e.g. latency / prompt tokens / memory)
    recommendation: str; notes: [str]; config: dict (shown as JSON)

The page needs no network and no JavaScript: one file a user can mail or open offline.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Mapping

from lmforge.atomic import atomic_write_text
from lmforge.evaluate import plots
from lmforge.evaluate.uncertainty import p_text

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;display:block;margin:1em 0}.rec{background:#eef6ee;padding:.8em;border-left:4px solid #4a4}
pre{background:#f7f7f7;padding:.6em;overflow:auto;white-space:pre-wrap}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;background:#f6f8fb;padding:.8em;
border-left:4px solid #4a7ab8}dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.flag{display:inline-block;background:#fde8e8;color:#a11;border-radius:3px;padding:0 .4em;margin:.2em .3em 0 0;
font-size:.85em}.better{color:#176a2c}.worse{color:#a11}.noise{color:#666}
"""


def systems_of(report: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """The report's scores as {system: {metric: {"value", "low", "high"}}} (plain floats widened)."""
    if report.get("systems"):
        raw = report["systems"]
    elif isinstance(report.get("before"), Mapping) and isinstance(report.get("after"), Mapping):
        raw = {"before": report["before"], "after": report["after"]}
    elif report.get("metrics"):
        raw = {"model": report["metrics"]}
    else:
        return {}
    return {name: _cells(scores) for name, scores in raw.items()}


def _cells(scores: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    out = {}
    for metric, cell in scores.items():
        if isinstance(cell, Mapping) and _is_number(cell.get("value")):
            out[metric] = {k: float(cell[k]) for k in ("value", "low", "high") if _is_number(cell.get(k))}
        elif _is_number(cell):
            out[metric] = {"value": float(cell)}
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(cell: Mapping[str, float] | None) -> str:
    if not cell:
        return ""
    text = f"{cell['value']:.4g}"
    if "low" in cell and "high" in cell:
        text += f" [{cell['low']:.4g}, {cell['high']:.4g}]"
    return text


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = ""
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>' if i >= numeric_from else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _scores_section(systems: dict, changes: list | None = None) -> list[str]:
    metrics = sorted({m for s in systems.values() for m in s})
    rows = [[m] + [_fmt(systems[s].get(m)) for s in systems] for m in metrics]
    parts = ["<h2>Metrics</h2>", "<p>Held-out data; in brackets the 95% bootstrap interval.</p>",
             _table(["metric", *systems], rows)]
    if any(c for s in systems.values() for c in s.values()) and not changes:
        parts.append(_img(plots.plot_metric_points(systems), "metric points"))
    return parts


def _changes_section(changes: list[Mapping[str, Any]]) -> list[str]:
    """after - before per metric with its paired interval, the p-value and a verdict; then the plot."""
    rows = []
    for c in changes:
        better = (c["difference"] < 0) == bool(c.get("lower_is_better"))
        verdict = "within noise" if c.get("within_noise") else ("better" if better else "worse") + ", beyond noise"
        css = "noise" if c.get("within_noise") else ("better" if better else "worse")
        rows.append(f'<tr><td>{html.escape(str(c["metric"]))}</td><td class="num">{c["difference"]:+.4g}</td>'
                    f'<td class="num">[{c["low"]:+.4g}, {c["high"]:+.4g}]</td><td class="num">{html.escape(p_text(c["p_value"]))}</td>'
                    f'<td class="{css}">{verdict}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("metric", "change (after - before)", "95% interval", "p", "verdict"))
    return ["<h2>Change before -&gt; after (paired bootstrap)</h2>", f"<table><tr>{head}</tr>{''.join(rows)}</table>",
            _img(plots.plot_changes(changes), "changes with intervals")]


def _samples_section(samples: list[Mapping[str, Any]], flag_lines: list[str] | None = None) -> list[str]:
    fixed = [c for c in ("prompt", "reference", "before", "after", "output") if any(c in s for s in samples)]
    # compare reports add one column per system (e.g. "base zero-shot", "fine-tuned + bm25")
    columns = fixed + list(dict.fromkeys(k for s in samples for k in s if k not in fixed and k != "flags"))
    head = "".join(f"<th>{html.escape(c if c != 'after' else 'after (before -> after)')}</th>" for c in columns)
    body = ""
    for s in samples:
        flags = s.get("flags") or {}
        cells = ""
        for c in columns:
            badges = "".join(f'<span class="flag">{html.escape(f)}</span>' for f in flags.get(c, []))
            cells += f"<td>{html.escape(str(s.get(c, '')))}{'<br>' + badges if badges else ''}</td>"
        body += f"<tr>{cells}</tr>"
    parts = ["<h2>Sample outputs</h2>"]
    if flag_lines:
        parts += ['<ul class="flags">', *(f"<li>{html.escape(line)}</li>" for line in flag_lines), "</ul>"]
    return parts + [f"<table><tr>{head}</tr>{body}</table>"]


def _paired_section(paired: list) -> tuple[list[str], list[str]]:
    """(HTML parts, one plain sentence per paired test)."""
    items = []
    for p in paired:
        if isinstance(p, str):
            items.append(p)
            continue
        verdict = "within noise" if p.get("within_noise") else "significant"
        items.append(
            f"{p.get('b')} vs {p.get('a')} on {p.get('metric')}: {p['difference']:+.4g} "
            f"[{p.get('low', float('nan')):+.4g}, {p.get('high', float('nan')):+.4g}], "
            f"{p_text(p.get('p_value', float('nan')))} ({verdict})"
        )
    return ["<h2>Paired tests</h2><ul>", *(f"<li>{html.escape(i)}</li>" for i in items), "</ul>"], items


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML document string (see the module docstring for the keys)."""
    title = str(report.get("title", "lmforge report"))
    body = f"<h1>{html.escape(title)}</h1>\n" + render_sections(report)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def render_sections(report: Mapping[str, Any]) -> str:
    """The report's sections (everything below the title) as an HTML fragment, for pages that
    embed a report (``lmforge ui``); :data:`STYLE` is the CSS it expects."""
    parts = []
    if report.get("facts"):
        parts += ['<dl class="facts">', *(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
                                          for k, v in report["facts"]), "</dl>"]
    if report.get("recommendation"):
        parts.append(f'<p class="rec">{html.escape(str(report["recommendation"]))}</p>')
    systems = systems_of(report)
    if systems:
        parts += _scores_section(systems, report.get("changes"))
    if report.get("changes"):
        parts += _changes_section(list(report["changes"]))
    if report.get("paired"):
        parts += _paired_section(list(report["paired"]))[0]
    if report.get("table"):
        rows = list(report["table"])
        columns = list(dict.fromkeys(k for r in rows for k in r))
        parts += ["<h2>Details</h2>", _table(columns, [[_cell_text(r.get(c)) for c in columns] for r in rows])]
    if report.get("history"):
        parts += ["<h2>Curves</h2>", _img(plots.plot_curves(report["history"]), "training curves")]
    if report.get("confusion"):
        conf = report["confusion"]
        parts += ["<h2>Confusion matrix</h2>", _img(plots.plot_confusion(conf["labels"], conf["matrix"]), "confusion")]
    if report.get("calibration"):
        cal = report["calibration"]
        parts += [f"<h2>Calibration</h2><p>Expected calibration error: {cal.get('ece', float('nan')):.4f}</p>",
                  _img(plots.plot_reliability(cal["bins"]), "reliability diagram")]
    if report.get("lengths"):
        parts += ["<h2>Lengths</h2>", *_length_images(report["lengths"])]
    if report.get("samples"):
        parts += _samples_section(list(report["samples"]), report.get("sample_flags"))
    if report.get("notes"):
        parts += ["<h2>Notes</h2><ul>", *(f"<li>{html.escape(str(n))}</li>" for n in report["notes"]), "</ul>"]
    if report.get("config"):
        parts += ["<h2>Config</h2>", f"<pre>{html.escape(json.dumps(report['config'], indent=2, default=str))}</pre>"]
    return "\n".join(parts)


def _length_images(lengths: Mapping[str, Any]) -> list[str]:
    """One histogram per kind of length (a flat {series: values} is one kind)."""
    if all(isinstance(v, Mapping) for v in lengths.values()):
        return [_img(plots.plot_lengths(series, title=title, xlabel="words" if "word" in title.lower() else "tokens"),
                     f"length histogram: {title}") for title, series in lengths.items()]
    return [_img(plots.plot_lengths(lengths), "length histogram")]


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def markdown_summary(report: Mapping[str, Any]) -> str:
    """A short markdown summary of the same report: title, recommendation, metric table, paired tests."""
    lines = [f"# {report.get('title', 'lmforge report')}", ""]
    if report.get("recommendation"):
        lines += [f"**Recommendation:** {report['recommendation']}", ""]
    systems = systems_of(report)
    if systems:
        names = list(systems)
        lines += ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for m in sorted({m for s in systems.values() for m in s}):
            lines.append(f"| {m} | " + " | ".join(_fmt(systems[s].get(m)) for s in names) + " |")
        lines.append("")
    if report.get("table"):
        rows = list(report["table"])
        columns = list(dict.fromkeys(k for r in rows for k in r))
        lines += ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
        lines += ["| " + " | ".join(_cell_text(r.get(c)) for c in columns) + " |" for r in rows] + [""]
    if report.get("paired"):
        lines += [f"- {item}" for item in _paired_section(list(report["paired"]))[1]] + [""]
    lines += [f"- {n}" for n in report.get("notes", [])]
    return "\n".join(lines).rstrip() + "\n"


def write_html_report(path: str | Path, report: Mapping[str, Any]) -> Path:
    """Write ``render_html(report)`` atomically to ``path`` and return it."""
    return atomic_write_text(Path(path), render_html(report))
