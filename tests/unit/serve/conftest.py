"""A real server on a free loopback port (uvicorn in a thread) over the tiny Llama, plus LoRA adapters."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

KEY = "sk-test-key"


def make_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    """A random (non-zero) LoRA adapter over the tiny Llama, saved with peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                     init_lora_weights=False)
    model = get_peft_model(base, cfg)
    model.save_pretrained(out)
    cfg_path = out / "adapter_config.json"
    data = json.loads(cfg_path.read_text())
    data["base_model_name_or_path"] = str(base_dir)
    cfg_path.write_text(json.dumps(data))
    return out


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.02)
        assert self.server.started

    @property
    def state(self):
        return self.app.state.lm

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def http(method: str, url: str, body=None, key: str | None = KEY, raw: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict | str]:
    """(status, parsed JSON or text) for one request; never raises on 4xx/5xx."""
    status, parsed, _ = http_with_headers(method, url, body, key, raw, headers)
    return status, parsed


def http_with_headers(method: str, url: str, body=None, key: str | None = KEY, raw: bytes | None = None,
                      headers: dict | None = None) -> tuple[int, dict | str, dict]:
    """(status, parsed JSON or text, response headers with lower-case names); never raises on 4xx/5xx."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, text, got = resp.status, resp.read().decode(), resp.headers
    except urllib.error.HTTPError as err:
        status, text, got = err.code, err.read().decode(), err.headers
    got = {k.lower(): v for k, v in got.items()}
    try:
        return status, json.loads(text), got
    except json.JSONDecodeError:
        return status, text, got


@pytest.fixture(scope="package")
def models_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_adapter(Path(tiny_llama_dir), root / "alpha", seed=1)
    make_adapter(Path(tiny_llama_dir), root / "beta", seed=2)
    (root / "notes").mkdir()
    return root


@pytest.fixture(scope="package")
def server(tiny_llama_dir, models_dir, tmp_path_factory):
    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app

    cfg = ServeConfig(
        api_keys=[KEY], model_name="tiny", models_dir=str(models_dir), adapters={"alpha": "alpha"},
        limits={"max_body_bytes": 4000, "max_prompt_tokens": 64, "max_tokens": 16, "max_concurrent": 32,
                "request_timeout_s": 60, "max_batch_size": 8, "batch_wait_ms": 20},
        log={"enabled": False},
    )
    window = tmp_path_factory.mktemp("monitor") / "traffic.jsonl"
    live = LiveServer(create_app(Path(tiny_llama_dir), cfg, window_file=window))
    yield live
    live.stop()


@pytest.fixture(scope="package")
def fp32_server(tiny_llama_dir, models_dir):
    """The tiny Llama and adapter alpha with fp32 weights on every CPU (``serve.dtype: auto`` would pick bf16 where
    it is native), for tests that compare served numbers with a forward pass."""
    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app

    cfg = ServeConfig(api_keys=[KEY], model_name="tiny", models_dir=str(models_dir), adapters={"alpha": "alpha"},
                      dtype="float32", limits={"max_prompt_tokens": 64, "max_tokens": 16, "batch_wait_ms": 20},
                      log={"enabled": False}, drift={"enabled": False})
    live = LiveServer(create_app(Path(tiny_llama_dir), cfg))
    yield live
    live.stop()
