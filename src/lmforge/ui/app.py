"""The dashboard app: one FastAPI application over a runs folder, pages rendered with Jinja2.

Safety (see docs/ui.md): binds 127.0.0.1 unless API keys are set (``lmforge.serve.access``);
with keys, every page needs ``Authorization: Bearer <key>`` or the key cookie set by /login;
request bodies are capped; a POST from another origin and (when bound to loopback) a request
naming another host (DNS rebinding) are refused; run names from requests are checked
(:mod:`lmforge.ui.paths`). The app reads RUNS_DIR and writes only the feedback folder and the
folders of runs it launches.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from lmforge.errors import UserError
from lmforge.serve.access import is_loopback, key_matches
from lmforge.serve.apierror import APIError
from lmforge.serve.http import check_auth
from lmforge.ui.runs import MetricsTail, RunIndex

HERE = Path(__file__).resolve().parent
KEY_COOKIE = "lmforge_ui_key"


@dataclass
class UISettings:
    """What ``lmforge ui`` was started with."""

    runs_dir: Path
    feedback_dir: Path | None = None  # default <runs_dir>/feedback
    host: str = "127.0.0.1"
    port: int = 7860
    keys: list[str] = field(default_factory=list)
    max_body_bytes: int = 256_000
    sse_interval_s: float = 1.0


@dataclass
class UIContext:
    """Everything the routes share: settings, the run index, caches and the page templates."""

    settings: UISettings
    index: RunIndex
    tail: MetricsTail
    templates: jinja2.Environment
    extras: dict[str, Any] = field(default_factory=dict)  # per-page state (launcher, playground, ...)

    @property
    def runs_dir(self) -> Path:
        return self.index.root

    @property
    def feedback_dir(self) -> Path:
        return (self.settings.feedback_dir or self.index.root / "feedback").resolve()

    def page(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(self.templates.get_template(template).render(**values), status_code=status_code)

    def fragment(self, template: str, **values: Any) -> str:
        return self.templates.get_template(template).render(**values)


def create_app(settings: UISettings) -> FastAPI:
    """The ready app for ``settings`` (RUNS_DIR must be an existing folder: UserError otherwise)."""
    runs_dir = Path(settings.runs_dir)
    if not runs_dir.is_dir():
        raise UserError("runs folder not found", where=str(runs_dir), hint="pass the folder your runs are in, e.g. runs")
    ctx = UIContext(settings, RunIndex(runs_dir), MetricsTail(), _templates())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        for extra in ctx.extras.values():
            close = getattr(extra, "close", None)
            if close is not None:
                close()

    app = FastAPI(title="lmforge ui", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.ui = ctx
    _errors(app, ctx)
    _guard(app, ctx)
    from lmforge.ui import compare, data_pages, detail, events, feedback, launch, playground, runs_page, static

    for module in (static, runs_page, events, detail, compare, feedback, data_pages, playground, launch):
        module.register(app, ctx)
    return app


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = fmt_number
    env.filters["duration"] = fmt_duration
    return env


def fmt_number(value: Any) -> str:
    """4 significant digits; "-" for missing or non-finite values."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def fmt_duration(seconds: Any) -> str:
    """``1h 02m``, ``3m 05s``, ``42s``; "-" when unknown."""
    if not isinstance(seconds, (int, float)) or seconds < 0 or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") or request.headers.get("hx-request") == "true"


def _errors(app: FastAPI, ctx: UIContext) -> None:
    def reply(request: Request, status: int, message: str) -> Response:
        if _wants_html(request):
            return ctx.page("error.html", status_code=status, title=f"{status}", status=status, message=message)
        return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return reply(request, exc.status_code, str(exc.detail))

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return reply(request, exc.status, exc.message)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return reply(request, 400, str(exc))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception):
        return reply(request, 500, f"internal error: {type(exc).__name__}: {exc}")


def _guard(app: FastAPI, ctx: UIContext) -> None:
    """Host / origin checks, the body cap and the API key, before any route runs."""
    settings = ctx.settings

    @app.middleware("http")
    async def guard(request: Request, call_next):
        problem = _refusal(request, settings)
        if problem is not None:
            status, message = problem
            if status == 401 and request.method == "GET" and _wants_html(request):
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            if _wants_html(request):
                return ctx.page("error.html", status_code=status, title=str(status), status=status, message=message)
            return PlainTextResponse(message, status_code=status)
        return await call_next(request)

    login(app, ctx)


def _refusal(request: Request, settings: UISettings) -> tuple[int, str] | None:
    """(status, message) when the request is refused before routing, else None."""
    host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
    if is_loopback(settings.host) and host and not is_loopback(host):
        return 403, f"this dashboard answers only on the loopback address, not {host!r}"
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return 403, "cross-origin form posts are refused"
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            return 413, f"request body is larger than {settings.max_body_bytes} bytes"
    if settings.keys and request.url.path not in ("/login",) and not request.url.path.startswith("/static/"):
        if key_matches(request.cookies.get(KEY_COOKIE, ""), settings.keys):
            return None
        try:
            check_auth(request, settings.keys)
        except APIError as exc:
            return 401, exc.message
    return None


def login(app: FastAPI, ctx: UIContext) -> None:
    """GET /login: a key form; POST /login: sets the key cookie (HttpOnly, SameSite=Strict)."""
    from lmforge.ui.forms import field, read_form

    @app.get("/login")
    async def login_page(next: str = "/"):
        return ctx.page("login.html", title="Sign in", next=_local(next), error=None)

    @app.post("/login")
    async def login_post(request: Request):
        form = await read_form(request, ctx.settings.max_body_bytes)
        key, target = field(form, "key", ""), _local(field(form, "next", "/"))
        if not key_matches(key, ctx.settings.keys):
            return ctx.page("login.html", status_code=401, title="Sign in", next=target, error="wrong key")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict")
        return response


def _local(path: str) -> str:
    """``path`` when it is a path on this site, else "/" (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"
