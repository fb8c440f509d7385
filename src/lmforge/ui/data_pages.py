"""Page 5, data: ``lmforge data preview`` of a run's training examples with the trained spans
highlighted, and the ``lmforge data prepare`` report when the run prepared its data."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse

from lmforge.ui.app import UIContext
from lmforge.ui.paths import config_file, run_folder

# Private-use characters mark the trained spans, so the text can be escaped before they become <mark>.
OPEN, CLOSE = "\ue000", "\ue001"
MAX_EXAMPLES = 50


def preview_blocks(run_dir: Path, n: int) -> list[dict]:
    """``[{"title", "html"}]``: the first ``n`` training examples of the run as the model sees them
    (what ``lmforge data preview`` prints for its config; multi-task runs: every task). UserError for a
    config or data file that no longer loads."""
    from lmforge.config import load_config
    from lmforge.pipeline import run_preview

    path = config_file(run_dir)
    config = load_config(path)
    text = run_preview(config, source=str(path), n=n, marks=(OPEN, CLOSE))
    return [{"title": f"{config.data.format} examples", "html": marked_html(text)}]


def marked_html(text: str) -> str:
    """Preview text, HTML-escaped, with the marked spans as ``<mark class="trained">``."""
    return html.escape(text).replace(OPEN, '<mark class="trained">').replace(CLOSE, "</mark>")


def prepare_report(run_dir: Path) -> str:
    """The body of <run>/data/report.html (written by ``lmforge data prepare``), or ""."""
    path = run_dir / "data" / "report.html"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    match = re.search(r"<body>(.*)</body>", text, flags=re.S)
    body = match.group(1) if match else ""
    return re.sub(r"<h1>.*?</h1>", "", body, count=1, flags=re.S)


def register(app: FastAPI, ctx: UIContext) -> None:
    @app.get("/data/{name}", response_class=HTMLResponse)
    async def data_page(name: str, request: Request):
        folder = run_folder(ctx.runs_dir, name)
        try:
            n = int(request.query_params.get("n", "3"))
        except ValueError:
            raise HTTPException(400, "n must be a whole number") from None
        if not 1 <= n <= MAX_EXAMPLES:
            raise HTTPException(400, f"n must be between 1 and {MAX_EXAMPLES}")
        from lmforge.errors import UserError

        error = ""
        try:
            blocks = await asyncio.to_thread(preview_blocks, folder, n)
        except UserError as exc:
            blocks, error = [], str(exc)
        except FileNotFoundError as exc:
            blocks, error = [], f"{exc.filename}: file not found"
        return ctx.page("data.html", title=f"Data: {name}", name=name, n=n, blocks=blocks, error=error,
                        prepare=await asyncio.to_thread(prepare_report, folder))
