"""A runs folder of synthetic run folders and the dashboard serving it on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import QA
from tests.fixtures.runs import write_run
from tests.unit.serve.conftest import LiveServer


@pytest.fixture(scope="package")
def runs_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    root = tmp_path_factory.mktemp("ui_runs")
    data = root.parent / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA * 4))
    write_run(root, "alpha", seed=1)
    write_run(root, "beta", seed=2, lr=0.02)
    write_run(root, "gamma", seed=3, data_file="other.jsonl")
    write_run(root, "delta", seed=4, model=str(tiny_llama_dir), data_file=str(data), html=False)
    live = write_run(root, "live", seed=5, html=False)
    now = time.time()
    (live / "status.json").write_text(json.dumps(
        {"phase": "train", "step": 5, "total_steps": 20, "eta_s": 12.0, "pid": os.getpid(),
         "host": socket.gethostname(), "started": now - 10, "updated": now, "error": None, "finished": None,
         "work": {"what": "evaluation", "done": 8, "total": 32, "unit": "examples", "eta_s": 30.0}}))
    broken = write_run(root, "broken", seed=6, html=False)
    (broken / "status.json").write_text(json.dumps(
        {"phase": "failed", "step": 0, "pid": 1, "host": "elsewhere", "started": now - 5, "updated": now - 4,
         "error": "data.train: file not found", "finished": now - 4}))
    outside = tmp_path_factory.mktemp("outside")
    write_run(outside, "secret", seed=7, html=False)
    (root / "escape").symlink_to(outside / "secret")
    return root


def make_server(runs_dir: Path, **settings) -> LiveServer:
    from lmforge.ui.app import UISettings, create_app

    return LiveServer(create_app(UISettings(runs_dir=runs_dir, sse_interval_s=0.2, **settings)))


@pytest.fixture(scope="package")
def ui(runs_dir):
    server = make_server(runs_dir)
    yield server
    server.stop()


def request(url: str, method: str = "GET", *, form: dict | None = None, data: bytes | None = None,
            headers: dict | None = None, html: bool = True) -> tuple[int, str, dict]:
    """(status, body, headers) of one request; never raises on 4xx/5xx, does not follow redirects."""
    from urllib.parse import urlencode

    body = urlencode(form, doseq=True).encode() if form is not None else data
    req = urllib.request.Request(url, data=body, method=method)
    if form is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if html:
        req.add_header("Accept", "text/html")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=120) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
