"""Page 2, one run: live progress, the report (the same sections as report.html), the resolved
config, the export files with the loading code of their model card and the ``lmforge serve`` line."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import threading
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response

from lmforge.ui.app import UIContext
from lmforge.ui.paths import config_file, run_folder
from lmforge.ui.runs_page import live_fragment

_LOG_TAIL = 6000  # characters of train.log shown for a run the dashboard launched


class ReportCache:
    """Report sections per run, rebuilt only when results.json or metrics.jsonl changed."""

    def __init__(self) -> None:
        self.entries: dict[Path, tuple[tuple, str]] = {}
        self.lock = threading.Lock()

    def sections(self, run_dir: Path, results: dict) -> str:
        from lmforge.evaluate.html import render_sections
        from lmforge.evaluate.report import html_report

        key = tuple(_stamp(run_dir / f) for f in ("results.json", "metrics.jsonl"))
        with self.lock:
            hit = self.entries.get(run_dir)
        if hit and hit[0] == key:
            return hit[1]
        text = render_sections(html_report(results, run_dir / "metrics.jsonl"))
        with self.lock:
            self.entries[run_dir] = (key, text)
        return text


def _stamp(path: Path) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (None,)
    return (st.st_mtime_ns, st.st_size)


def export_files(run_dir: Path) -> list[dict]:
    """Files under <run>/export: relative path and size (MB), sorted."""
    root = run_dir / "export"
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out.append({"path": str(path.relative_to(run_dir)), "mb": path.stat().st_size / 2**20})
    return out


def parity_checks(run_dir: Path) -> list[dict]:
    """Each export's parity.json summary: format, passed, max |logit difference|."""
    out = []
    for path in sorted((run_dir / "export").glob("*/parity.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out.append({"export": path.parent.name, "format": data.get("format"), "passed": data.get("passed"),
                    "diff": data.get("max_abs_logit_diff")})
    return out


def usage_html(run_dir: Path) -> str:
    """The "Usage" section of the export's model card (export/README.md) as HTML."""
    card = run_dir / "export" / "README.md"
    if not card.is_file():
        return ""
    text = card.read_text(encoding="utf-8", errors="replace")
    match = re.search(r"^## Usage\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    return markdown_html(match.group(1)) if match else ""


def markdown_html(text: str) -> str:
    """The little markdown a model card uses: fenced code blocks, paragraphs, `code` spans."""
    parts = []
    for i, chunk in enumerate(re.split(r"^```[a-z]*\n?", text, flags=re.M)):
        if i % 2:
            parts.append(f"<pre><code>{html.escape(chunk.rstrip())}</code></pre>")
        else:
            for para in (p.strip() for p in chunk.split("\n\n")):
                if para:
                    parts.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(para)) + "</p>")
    return "\n".join(parts)


def log_tail(run_dir: Path) -> str:
    """The end of <run>/train.log (written for runs launched from the dashboard), or ""."""
    path = run_dir / "train.log"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(max(0, size - _LOG_TAIL))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def register(app: FastAPI, ctx: UIContext) -> None:
    reports = ReportCache()

    def values(name: str) -> dict:
        folder = run_folder(ctx.runs_dir, name)
        row = ctx.index.summary(folder)
        results = ctx.index.results(folder)
        return {"title": name, "where": str(folder), "row": row, "name": name, "folder": str(folder),
                "live": live_fragment(ctx, row) if row.running else "",
                "report": reports.sections(folder, results) if results else "",
                "config": config_file(folder).read_text(encoding="utf-8", errors="replace"),
                "exports": export_files(folder), "parity": parity_checks(folder), "usage": usage_html(folder),
                "serve_line": f"lmforge serve {folder}" if (folder / "export").is_dir() else "",
                "log": log_tail(folder), "has_compare": (folder / "compare.json").is_file(),
                "has_prepare": (folder / "data" / "report.html").is_file()}

    @app.get("/runs/{name}", response_class=HTMLResponse)
    async def run_page(name: str, request: Request):
        data = await asyncio.to_thread(values, name)
        return ctx.page("run.html", **data)

    @app.get("/runs/{name}/report.html")
    async def report_file(name: str):
        path = run_folder(ctx.runs_dir, name) / "report.html"
        if not path.is_file():
            raise HTTPException(404, f"run {name!r} has no report yet")
        return Response(path.read_bytes(), media_type="text/html",
                        headers={"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"})
