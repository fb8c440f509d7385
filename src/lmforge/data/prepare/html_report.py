"""Self-contained ``report.html``: outputs, rules, and length / label histograms as CSS bars.

No scripts, no external assets; every value is HTML-escaped. Deterministic for the same input.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

from lmforge.atomic import atomic_write_text

_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}td:first-child{text-align:left}"
    ".bar{background:#4a7;height:1em;display:inline-block}"
)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(counts: list[tuple[str, int]]) -> str:
    peak = max((n for _, n in counts), default=0) or 1
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{n}</td>"
        f"<td style='text-align:left'><span class='bar' style='width:{round(300 * n / peak)}px'></span></td></tr>"
        for label, n in counts
    )
    return f"<table>{rows}</table>"


def length_bins(lengths: list[int], bins: int = 10) -> list[tuple[str, int]]:
    """(range label, count) for ``bins`` equal-width bins from 0 to the longest length."""
    if not lengths:
        return []
    width = max(1, -(-max(lengths) // bins))
    counts = Counter(min(n // width, bins - 1) for n in lengths)
    return [(f"{i * width}-{(i + 1) * width - 1}", counts[i]) for i in range(bins)]


def write_html(out_dir: Path, manifest: dict[str, Any], lengths: list[int], balance: dict[str, int] | None) -> Path:
    """Write ``out_dir/report.html`` and return its path."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Data preparation report</title><style>{_STYLE}</style></head><body>"]
    parts.append("<h1>Data preparation report</h1><h2>Outputs</h2>")
    parts.append(_table(["split", "examples", "sha256"], [[o["split"], o["examples"], o["sha256"][:16]] for o in manifest["outputs"]]))
    parts.append("<h2>Rules</h2>")
    parts.append(_table(["rule", "changed", "removed", "found"], [[k, v["changed"], v["removed"], v.get("found", 0)] for k, v in manifest["rules"].items()]))
    parts.append(f"<h2>Length of train examples ({html.escape(manifest['length_unit'])})</h2>")
    parts.append(_bars(length_bins(lengths)))
    if balance:
        parts.append("<h2>Label balance (train)</h2>")
        parts.append(_bars(list(balance.items())))
    parts.append("</body></html>\n")
    return atomic_write_text(out_dir / "report.html", "".join(parts))
