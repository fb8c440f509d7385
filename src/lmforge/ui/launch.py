"""Page 7, a new run from a run: its config plus dotted overrides, validated live with the checks
of ``lmforge validate`` (load_config + lmforge.pipeline.plan.plan_run), then trained by ``lmforge train`` in a
subprocess that outlives the dashboard.

A launch creates ``RUNS_DIR/<new name>/`` (never an existing folder) holding ``launch.yaml``
(the validated, resolved config the subprocess trains), ``train.log`` (its output) and a first
``status.json`` naming the subprocess, which the pipeline then keeps up to date.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse

from lmforge.atomic import atomic_write_text
from lmforge.errors import UserError
from lmforge.outputs import write_marker
from lmforge.status import STATUS_FILE
from lmforge.ui.app import UIContext
from lmforge.ui.forms import field, read_form
from lmforge.ui.paths import config_file, run_folder, valid_name

MAX_OVERRIDES = 100


def parse_overrides(text: str) -> list[str]:
    """One ``section.key=value`` per line; blank lines and ``#`` comments skipped."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    overrides = [line for line in lines if line and not line.startswith("#")]
    if len(overrides) > MAX_OVERRIDES:
        raise UserError(f"more than {MAX_OVERRIDES} overrides", where="overrides")
    return overrides


def plan_new_run(source: Path, runs_dir: Path, name: str, overrides: list[str]):
    """The validated config of a new run ``name`` from run folder ``source`` plus ``overrides``
    (the checks of ``lmforge validate``); UserError naming the problem."""
    from lmforge.config import load_config
    from lmforge.pipeline.plan import plan_run

    if not valid_name(name):
        raise UserError("a run name is letters, digits, '.', '_' or '-' (up to 128, no leading dot)",
                        where="new run name")
    folder = runs_dir / name
    if folder.exists():
        raise UserError("a run folder with this name exists already", where=str(folder), hint="pick another name")
    where = str(folder).replace("'", "''")
    config = load_config(config_file(source), overrides + [f"run.name={name}", f"run.output_dir='{where}'"])
    plan = plan_run(config, source=f"{config_file(source)} + overrides")
    return config, plan


class Launcher:
    """Starts ``lmforge train`` subprocesses and reaps them when they end."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def launch(self, config, folder: Path) -> int:
        """Create ``folder`` (it must not exist), write launch.yaml + a first status, start training."""
        with self.lock:
            folder.mkdir(parents=False, exist_ok=False)
            write_marker(folder, "run")  # lmforge made this run folder: training may write into it
            text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
            launch_file = atomic_write_text(folder / "launch.yaml", text)
            log = open(folder / "train.log", "ab")
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "lmforge.cli.main", "train", str(launch_file)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            finally:
                log.close()
            now = time.time()
            atomic_write_text(folder / STATUS_FILE, json.dumps(
                {"phase": "load", "step": 0, "total_steps": None, "eta_s": None, "pid": proc.pid,
                 "host": socket.gethostname(), "started": now, "updated": now, "error": None, "finished": None}))
        threading.Thread(target=proc.wait, name=f"lmforge-reap-{proc.pid}", daemon=True).start()
        return proc.pid


def register(app: FastAPI, ctx: UIContext) -> None:
    launcher = ctx.extras.setdefault("launcher", Launcher())
    limit = ctx.settings.max_body_bytes

    def check(name: str, form: dict):
        source = run_folder(ctx.runs_dir, name)
        new = field(form, "new_name", "").strip()
        return plan_new_run(source, ctx.runs_dir, new, parse_overrides(field(form, "overrides", ""))), new

    @app.get("/runs/{name}/new", response_class=HTMLResponse)
    async def new_run(name: str):
        source = run_folder(ctx.runs_dir, name)
        return ctx.page("new_run.html", title=f"New run from {name}", name=name, suggested=f"{name}-2",
                        overrides="", config=config_file(source).read_text(encoding="utf-8", errors="replace"),
                        error="")

    @app.post("/runs/{name}/validate", response_class=HTMLResponse)
    async def validate(name: str, request: Request):
        form = await read_form(request, limit)
        try:
            (config, plan), new = await asyncio.to_thread(check, name, form)
        except UserError as exc:
            return HTMLResponse(ctx.fragment("validation.html", ok=False, message=str(exc)))
        message = (f"ok: model {config.model.name}, data {config.data.format}, method {plan.method.name}, "
                   f"objective {plan.objective.name}; trains into {config.run.dir}")
        return HTMLResponse(ctx.fragment("validation.html", ok=True, message=message))

    @app.post("/runs/{name}/launch")
    async def launch(name: str, request: Request):
        form = await read_form(request, limit)
        try:
            (config, _plan), new = await asyncio.to_thread(check, name, form)
            await asyncio.to_thread(launcher.launch, config, ctx.runs_dir / new)
        except (UserError, FileExistsError) as exc:
            source = run_folder(ctx.runs_dir, name)
            status = 409 if isinstance(exc, FileExistsError) or "exists already" in str(exc) else 400
            return ctx.page("new_run.html", status_code=status, title=f"New run from {name}", name=name,
                            suggested=field(form, "new_name", ""), overrides=field(form, "overrides", ""),
                            config=config_file(source).read_text(encoding="utf-8", errors="replace"),
                            error=str(exc))
        return RedirectResponse(f"/runs/{new}", status_code=303)

