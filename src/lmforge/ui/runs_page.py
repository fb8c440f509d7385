"""Page 1, the runs: every run under RUNS_DIR with its state, key metric and (when running) live progress."""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse

from lmforge.ui.app import UIContext
from lmforge.ui.charts import line_chart
from lmforge.ui.runs import RunSummary, curves

PHASE_TEXT = {"load": "loading data and model", "before-eval": "evaluating the base model (before)",
              "train": "training", "after-eval": "evaluating the trained model (after)", "export": "exporting",
              "parity": "parity check of the export", "done": "done", "failed": "failed",
              "interrupted": "interrupted"}


def live_values(ctx: UIContext, row: RunSummary) -> dict:
    """What the live fragment of a run shows: phase, step k/N, ETA, loss and eval curves."""
    status = row.status
    train, evals = curves(ctx.tail.records(row.path))
    step, total = status.get("step") or 0, status.get("total_steps")
    return {"row": row, "phase": status.get("phase") or "?",
            "phase_text": PHASE_TEXT.get(status.get("phase"), status.get("phase") or "?"),
            "step": step, "total": total, "eta": status.get("eta_s"), "work": _work(status.get("work")),
            "percent": round(100 * step / total) if total else 0,
            "age": time.time() - float(status.get("updated") or time.time()),
            "elapsed": time.time() - float(status.get("started") or time.time()),
            "loss_chart": line_chart(train, title="training loss"),
            "eval_chart": line_chart(evals, title="held-out metrics")}


def _work(work) -> dict | None:
    """The phase's current work from status.json (evaluation, answers, parity, ...), when well-formed."""
    if not isinstance(work, dict) or not all(isinstance(work.get(k), int) for k in ("done", "total")):
        return None
    return {"what": str(work.get("what") or ""), "done": work["done"], "total": work["total"],
            "unit": str(work.get("unit") or ""), "eta_s": work.get("eta_s") if isinstance(work.get("eta_s"), (int, float)) else None}


def live_fragment(ctx: UIContext, row: RunSummary) -> str:
    return ctx.fragment("live.html", **live_values(ctx, row))


def table_html(ctx: UIContext, rows: list[RunSummary]) -> str:
    lives = {r.name: live_fragment(ctx, r) for r in rows if r.running}
    return ctx.fragment("runs_table.html", rows=rows, lives=lives)


def register(app: FastAPI, ctx: UIContext) -> None:
    @app.get("/", response_class=HTMLResponse)
    async def runs(request: Request):
        rows = await asyncio.to_thread(ctx.index.summaries)
        return ctx.page("runs.html", title="Runs", where=str(ctx.runs_dir), rows=rows, table=table_html(ctx, rows))

    @app.get("/runs/table", response_class=HTMLResponse)
    async def runs_table(request: Request):
        rows = await asyncio.to_thread(ctx.index.summaries)
        return HTMLResponse(table_html(ctx, rows))
