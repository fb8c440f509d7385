"""The FastAPI application: routes, auth, limits, errors, metrics and request logs.

Endpoints: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/classify;
GET /v1/models; admin GET/POST /admin/adapters, DELETE /admin/adapters/{name} (API key required);
GET /health and /metrics (unauthenticated; the server binds 127.0.0.1 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from lmforge.serve import completion, encoding
from lmforge.serve.accesslog import AccessLog, log_terms
from lmforge.serve.admission import Admission
from lmforge.serve.apierror import APIError
from lmforge.serve.drift import DriftRecorder
from lmforge.serve.engine import Engine
from lmforge.serve.http import check_auth, read_json
from lmforge.serve.logprobs import TokenPieces
from lmforge.serve.metrics import Metrics
from lmforge.serve.protocol import (AdapterRequest, ChatRequest, ClassifyRequest, CompletionRequest,
                                    EmbeddingRequest, parse_body)
from lmforge.serve.store import ModelStore, jail_path, resolve_target


@dataclass
class ServerState:
    store: ModelStore
    cfg: object
    keys: list[str]
    admission: Admission
    metrics: Metrics
    log: AccessLog
    engine: Engine | None
    recorder: DriftRecorder | None
    max_positions: int | None
    pieces: TokenPieces | None = None  # token text and bytes, for log-probabilities (causal models)
    vocab_size: int | None = None  # token ids a request may name (prompt ids, logit_bias)


def build_state(store: ModelStore, cfg, window_file: Path | None) -> ServerState:
    """Wire engine, metrics, logs and the drift recorder around a loaded store."""
    lim = cfg.limits
    recorder = DriftRecorder(window_file, cfg.drift.window_size) if cfg.drift.enabled and window_file else None
    engine = None
    if store.kind == "causal":
        hook = (lambda job, stats: recorder.record(stats, job.model)) if recorder else None
        engine = Engine(store, lim.max_batch_size, lim.batch_wait_ms, on_prefill=hook)
    admission = Admission(lim.max_concurrent, lim.max_queue)
    metrics = Metrics(queue_depth=(engine.depth if engine else (lambda: 0)), in_flight=lambda: admission.used,
                      waiting=admission.waiting)
    if engine is not None:
        engine.on_batch = metrics.batch_size.observe
    log = AccessLog(cfg.log.enabled, cfg.log.file, cfg.log.log_prompts, cfg.log.redact, terms=log_terms(cfg.log))
    max_pos = getattr(store.model.config, "max_position_embeddings", None)
    pieces = TokenPieces(store.tokenizer) if engine is not None else None
    vocab = getattr(store.model.config, "vocab_size", None)
    return ServerState(store, cfg, cfg.resolved_api_keys(), admission, metrics, log, engine, recorder, max_pos, pieces,
                       vocab)


def create_app(target, serve_cfg, window_file: str | Path | None = None) -> FastAPI:
    """A ready app. target: a loaded ModelStore, or a path for :func:`resolve_target`.

    window_file: where per-request drift statistics go (serve_cfg.drift.window_file wins).
    """
    if not isinstance(target, ModelStore):
        target = ModelStore(resolve_target(target, serve_cfg), serve_cfg.dtype)
    window = serve_cfg.drift.window_file or window_file
    state = build_state(target, serve_cfg, Path(window) if window else None)
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if state.engine is not None:
            state.engine.close()

    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.lm = state
    _errors(app, state)
    _routes(app, state)
    app.add_middleware(Observe, state=state)
    return app


def _errors(app: FastAPI, state: ServerState) -> None:
    def reply(err: APIError) -> JSONResponse:
        state.metrics.errors.labels(err.code).inc()
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return reply(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return reply(APIError(exc.status_code, str(exc.detail), code))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):  # a path parameter
        return reply(APIError(400, "invalid request path", "invalid_request"))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception):  # a bug of ours: logged with its traceback
        return reply(APIError(500, f"internal error: {type(exc).__name__}", "internal_error"))


class Observe:
    """ASGI middleware: request id header, metrics and one access-log line per HTTP request.

    Plain ASGI (not BaseHTTPMiddleware), so streamed responses and client disconnects pass
    through untouched; a request that ends in an exception is counted as 500."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, rid, status = time.monotonic(), uuid.uuid4().hex[:16], [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.monotonic() - start
            self.state.metrics.observe(endpoint, status[0], seconds)
            client = scope.get("client")
            self.state.log.write(request_id=rid, method=scope.get("method"), path=endpoint, status=status[0],
                                 latency_ms=round(seconds * 1000, 2), client=client[0] if client else None)


def _routes(app: FastAPI, state: ServerState) -> None:
    store, lim = state.store, state.cfg.limits

    async def body(request: Request, cls):
        check_auth(request, state.keys)
        req = parse_body(cls, await read_json(request, lim.max_body_bytes))
        if req.model is None:  # one-model clients (curl, scripts) need not know the run's name
            return req.model_copy(update={"model": store.name})
        store.check_model(req.model)
        return req

    def need_causal() -> None:
        if state.engine is None:
            raise APIError(400, f"{store.name} is a {store.kind} model: it does not generate text",
                           "not_a_generator", "model")

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = await body(request, ChatRequest)
        need_causal()
        return await completion.answer(state, req, [completion.chat_prompt_ids(store.tokenizer, req)], True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = await body(request, CompletionRequest)
        need_causal()
        prompts = completion.completion_prompts(state, req)
        return await completion.answer(state, req, [p.ids for p in prompts], False, prompts if req.echo else None)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        return await encoding.embeddings(state, await body(request, EmbeddingRequest))

    @app.post("/v1/classify")
    async def classify(request: Request):
        return await encoding.classify(state, await body(request, ClassifyRequest))

    @app.get("/v1/models")
    async def models(request: Request):
        check_auth(request, state.keys)
        return {"object": "list", "data": [_model_card(n) for n in store.names()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str, request: Request):
        check_auth(request, state.keys)
        return _model_card(store.check_model(name))

    _admin(app, state)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": store.name, "kind": store.kind, "adapters": list(store.adapters),
                "queue_depth": state.engine.depth() if state.engine else 0, "in_flight": state.admission.used,
                "waiting": state.admission.waiting()}

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.exposition(), media_type="text/plain; version=0.0.4")


def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "lmforge"}


def _admin(app: FastAPI, state: ServerState) -> None:
    store = state.store

    def admin_auth(request: Request) -> None:
        if not state.keys:
            raise APIError(403, "admin endpoints are disabled: configure an API key", "admin_disabled")
        check_auth(request, state.keys)

    @app.get("/admin/adapters")
    async def list_adapters(request: Request):
        admin_auth(request)
        return {"models_dir": str(store.target.models_dir),
                "adapters": {n: str(p) for n, p in store.adapters.items()}}

    @app.post("/admin/adapters")
    async def add_adapter(request: Request):
        admin_auth(request)
        req = parse_body(AdapterRequest, await read_json(request, state.cfg.limits.max_body_bytes))
        path = jail_path(store.target.models_dir, req.path)
        await asyncio.to_thread(store.add_adapter, req.name, path)
        return JSONResponse({"added": req.name, "models": store.names()}, status_code=201)

    @app.delete("/admin/adapters/{name}")
    async def remove_adapter(name: str, request: Request):
        admin_auth(request)
        await asyncio.to_thread(store.remove_adapter, name)
        return {"removed": name, "models": store.names()}
