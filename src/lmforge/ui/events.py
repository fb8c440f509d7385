"""Server-sent events: live updates of the runs page and of one run's page.

``/events/runs`` sends ``live-<run>`` (the live fragment of a running run, when it changed) and
``runs-changed`` (a run appeared, vanished or changed state: the page re-reads its table).
``/events/run/<name>`` sends ``live`` and ``changed`` for one run. Each stream polls the folders
every ``sse_interval_s`` seconds and ends when the client goes away.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from fastapi import FastAPI, Request
from starlette.responses import StreamingResponse

from lmforge.ui.app import UIContext
from lmforge.ui.paths import run_folder
from lmforge.ui.runs_page import live_fragment


def sse(event: str, data: str) -> str:
    """One SSE message (every line of ``data`` prefixed, as the protocol asks)."""
    lines = "\n".join(f"data: {line}" for line in (data.splitlines() or [""]))
    return f"event: {event}\n{lines}\n\n"


def stream(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def register(app: FastAPI, ctx: UIContext) -> None:
    interval = ctx.settings.sse_interval_s

    @app.get("/events/runs")
    async def runs_events(request: Request):
        async def body():
            shape, sent = None, {}
            yield ": connected\n\n"
            while not await request.is_disconnected():
                rows = await asyncio.to_thread(ctx.index.summaries)
                now = [(r.name, r.state) for r in rows]
                if shape is not None and now != shape:
                    yield sse("runs-changed", "")
                    sent = {}
                shape = now
                for row in rows:
                    if row.running:
                        fragment = await asyncio.to_thread(live_fragment, ctx, row)
                        if sent.get(row.name) != fragment:
                            sent[row.name] = fragment
                            yield sse(f"live-{row.name}", fragment)
                await asyncio.sleep(interval)

        return stream(body())

    @app.get("/events/run/{name}")
    async def run_events(name: str, request: Request):
        folder = run_folder(ctx.runs_dir, name)

        async def body():
            state, sent = None, None
            yield ": connected\n\n"
            while not await request.is_disconnected():
                row = await asyncio.to_thread(ctx.index.summary, folder)
                if state is not None and row.state != state:
                    yield sse("changed", row.state)
                state = row.state
                if row.running:
                    fragment = await asyncio.to_thread(live_fragment, ctx, row)
                    if fragment != sent:
                        sent = fragment
                        yield sse("live", fragment)
                await asyncio.sleep(interval)

        return stream(body())
