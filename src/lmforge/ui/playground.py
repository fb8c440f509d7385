"""Page 6, playground and monitor: the same message answered by the base model and the tuned
one side by side, through the serving engine (``lmforge.serve``: its model store, batching
engine and chat-template rendering); and the drift report of ``lmforge monitor`` per signal.

One run's models are kept loaded at a time (loading another run's unloads them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse

from lmforge.errors import UserError
from lmforge.ui.app import UIContext
from lmforge.ui.forms import field, read_form
from lmforge.ui.paths import run_folder

MAX_NEW_TOKENS = 256
TIMEOUT_S = 120.0


@dataclass
class Side:
    """One model of the pair: its engine and the model name the engine knows it by."""

    label: str
    model: str
    engine: object


class Playground:
    """Loads a run's base and tuned models into serving engines, on first use."""

    def __init__(self) -> None:
        self.run: Path | None = None
        self.sides: list[Side] = []
        self.engines: list = []
        self.lock = threading.Lock()

    def sides_for(self, run_dir: Path) -> list[Side]:
        with self.lock:
            if self.run != run_dir:
                self.close()
                self.sides, self.engines = _load(run_dir)
                self.run = run_dir
            return self.sides

    def close(self) -> None:
        for engine in self.engines:
            engine.close()
        self.run, self.sides, self.engines = None, [], []


def _load(run_dir: Path) -> tuple[list[Side], list]:
    """(base and tuned sides, engines) of a finished run: a PEFT adapter export is served over one
    copy of the base (adapter off = base); otherwise the merged export and the base load apart."""
    from lmforge.config import load_config
    from lmforge.config.serve import ServeConfig
    from lmforge.model.source import resolve_model
    from lmforge.serve.engine import Engine
    from lmforge.serve.store import ModelStore, ServeTarget, is_peft_adapter, resolve_target

    config = load_config(run_dir / "config.yaml")
    base = resolve_model(config.model).path
    adapter = run_dir / "export" / "adapter"
    if is_peft_adapter(adapter):
        store = ModelStore(ServeTarget(base=base, name="base", models_dir=run_dir / "export",
                                       adapters={"tuned": adapter}))
        stores = {"base": store, "tuned": store}
    else:
        stores = {"base": ModelStore(ServeTarget(base=base, name="base", models_dir=base)),
                  "tuned": ModelStore(resolve_target(run_dir, ServeConfig(model_name="tuned")))}
    if any(s.kind != "causal" for s in stores.values()):
        raise UserError("the playground chats with generative models; this run trained a classifier or encoder",
                        where=str(run_dir))
    engines = {id(s): Engine(s) for s in stores.values()}
    sides = [Side(label, stores[label].names()[0] if label == "base" else "tuned", engines[id(stores[label])])
             for label in ("base", "tuned")]
    return sides, list(engines.values())


async def answer(side: Side, message: str, max_tokens: int) -> str:
    """Greedy answer of one side to a one-message chat (the serving engine's path)."""
    from lmforge.serve.completion import chat_prompt_ids, collect, start_job
    from lmforge.serve.protocol import ChatRequest

    req = ChatRequest(model=side.model, messages=[{"role": "user", "content": message}], max_tokens=max_tokens,
                      temperature=0.0)
    store = side.engine.store
    ids = chat_prompt_ids(store.tokenizer, req)
    room = getattr(store.model.config, "max_position_embeddings", None)
    if room is not None and len(ids) >= room:
        raise HTTPException(400, f"the message is {len(ids)} tokens; the model reads at most {room}")
    job, events = start_job(SimpleNamespace(engine=side.engine), req, ids,
                            min(max_tokens, room - len(ids)) if room else max_tokens)
    done = await collect(job, events, time.monotonic() + TIMEOUT_S)
    return done["text"]


def drift(run_dir: Path) -> tuple[dict | None, str]:
    """(``lmforge monitor`` report of the run's served traffic, or None; a message when unavailable)."""
    from lmforge.serve.monitor import run_monitor

    try:
        return run_monitor(run_dir / "monitor" / "traffic.jsonl", run_dir / "monitor" / "baseline.json"), ""
    except UserError as exc:
        return None, str(exc)


def register(app: FastAPI, ctx: UIContext) -> None:
    playground = ctx.extras.setdefault("playground", Playground())

    @app.get("/playground/{name}", response_class=HTMLResponse)
    async def playground_page(name: str):
        folder = run_folder(ctx.runs_dir, name)
        report, note = await asyncio.to_thread(drift, folder)
        return ctx.page("playground.html", title=f"Playground: {name}", name=name, report=report, note=note,
                        finished=(folder / "export").is_dir())

    @app.post("/playground/{name}/chat", response_class=HTMLResponse)
    async def chat(name: str, request: Request):
        form = await read_form(request, ctx.settings.max_body_bytes)
        message = field(form, "message").strip()
        if not message:
            raise HTTPException(400, "write a message first")
        try:
            max_tokens = int(field(form, "max_tokens", "64"))
        except ValueError:
            raise HTTPException(400, "max_tokens must be a whole number") from None
        if not 1 <= max_tokens <= MAX_NEW_TOKENS:
            raise HTTPException(400, f"max_tokens must be between 1 and {MAX_NEW_TOKENS}")
        folder = run_folder(ctx.runs_dir, name)
        if not (folder / "export").is_dir():
            raise HTTPException(409, f"run {name!r} has no export yet: it can chat once it finished")
        sides = await asyncio.to_thread(playground.sides_for, folder)
        answers = await asyncio.gather(*(answer(side, message, max_tokens) for side in sides))
        return HTMLResponse(ctx.fragment("chat_answers.html", message=message,
                                         answers=list(zip([s.label for s in sides], answers))))
