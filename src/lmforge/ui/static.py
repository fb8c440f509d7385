"""The vendored scripts (htmx + its SSE extension, see static/LICENSE-*.txt) and the stylesheet."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import Response

from lmforge.ui.app import HERE, UIContext

FILES = {"htmx.min.js": "text/javascript", "sse.min.js": "text/javascript", "style.css": "text/css",
         "LICENSE-htmx.txt": "text/plain", "LICENSE-htmx-ext-sse.txt": "text/plain"}


def register(app: FastAPI, ctx: UIContext) -> None:
    cache: dict[str, bytes] = {}

    @app.get("/static/{name}")
    async def static(name: str):
        if name not in FILES:  # a fixed list: no path from the request reaches the disk
            raise HTTPException(404, "no such file")
        if name not in cache:
            cache[name] = (HERE / "static" / name).read_bytes()
        return Response(cache[name], media_type=FILES[name], headers={"Cache-Control": "max-age=3600"})
