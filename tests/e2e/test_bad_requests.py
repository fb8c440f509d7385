"""Bad input to `lmforge serve`: malformed requests to the real server and bad server settings.

Requests: each gets a 4xx with an OpenAI-style JSON error naming the offending field, no
traceback in the server's log, and the server still answers afterwards. Settings: exit 2, no
traceback, the setting named. Throughout, every file the user owns stays byte-identical and
nothing is added next to them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli

KEY = "sk-e2e"
CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
SERVER_YAML = """\
model_name: tiny
api_key_env: LMF_E2E_KEYS
limits: {max_body_bytes: 250000, max_prompt_tokens: 64, max_tokens: 16}
drift: {enabled: false}
"""


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class Served:
    def __init__(self, root: Path):
        self.root, self.cwd = root, root / "cwd"
        self.cwd.mkdir()
        self.before = snapshot(root)
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   PYTHONUNBUFFERED="1", LMF_E2E_KEYS=KEY)
        self.err = open(root.parent / f"{root.name}-server.log", "w+")  # beside, not inside, the user's folder
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lmforge.cli.main", "serve", str(root / "model"), "port=0",
             "--config", str(root / "server.yaml")],
            cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        assert "serving" in line, line + self.log()
        self.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])

    def log(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.err.close()


@pytest.fixture(scope="module")
def served(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    shutil.copytree(tiny_llama_dir, root / "model")
    (root / "server.yaml").write_text(SERVER_YAML)
    server = Served(root)
    yield server
    server.stop()
    assert snapshot(root) == server.before  # nothing changed, nothing added (cwd included)


def call(port: int, method: str, path: str, body=None, raw: bytes | None = None, key: str | None = KEY,
         headers: dict | None = None) -> tuple[int, str]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def chat(**kw) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **kw}


def msgs(*messages) -> dict:
    return chat(messages=list(messages))


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


# (id, method, path, request kwargs, status, the field the error must name: param, or a phrase of the message)
ROWS = [
    ("text-part-not-a-string", "POST", CHAT, dict(body=msgs({"role": "user", "content": [{"type": "text", "text": 5}]})),
     400, "messages.0.content.0.text"),
    ("json-100000-deep", "POST", CHAT, dict(raw=deep(100_000)), 400, "nested deeper"),
    ("json-70-deep-in-a-field", "POST", CHAT, dict(raw=b'{"model": "tiny", "stop": ' + deep(70) + b"}"), 400, "stop.0.0"),
    ("unpaired-surrogate", "POST", CHAT, dict(raw=b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}'),
     400, "messages.0.content"),
    ("invalid-utf8", "POST", CHAT, dict(raw=b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff"}]}'),
     400, "utf-8"),
    ("not-json", "POST", CHAT, dict(raw=b"{model: tiny"), 400, "not valid JSON"),
    ("json-array-body", "POST", CHAT, dict(raw=b"[1, 2]"), 400, "JSON object"),
    ("integer-of-5000-digits", "POST", CHAT, dict(raw=b'{"model": "tiny", "max_tokens": ' + b"9" * 5000 + b"}"),
     400, "digits"),
    ("messages-missing", "POST", CHAT, dict(body={"model": "tiny"}), 400, "messages"),
    ("messages-empty", "POST", CHAT, dict(body=chat(messages=[])), 400, "messages"),
    ("message-not-an-object", "POST", CHAT, dict(body=chat(messages=["hi"])), 400, "messages.0"),
    ("role-unknown", "POST", CHAT, dict(body=msgs({"role": "wizard", "content": "x"})), 400, "messages.0.role"),
    ("role-a-number", "POST", CHAT, dict(body=msgs({"role": 5, "content": "x"})), 400, "messages.0.role"),
    ("image-part", "POST", CHAT,
     dict(body=msgs({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]})),
     400, "messages.0.content.0"),
    ("content-a-number", "POST", CHAT, dict(body=msgs({"role": "user", "content": 7})), 400, "messages.0.content"),
    ("temperature-too-high", "POST", CHAT, dict(body=chat(temperature=5)), 400, "temperature"),
    ("temperature-a-string", "POST", CHAT, dict(body=chat(temperature="hot")), 400, "temperature"),
    ("temperature-nan", "POST", CHAT, dict(raw=json.dumps(chat()).encode()[:-1] + b', "temperature": NaN}'),
     400, "temperature"),
    ("top-p-zero", "POST", CHAT, dict(body=chat(top_p=0)), 400, "top_p"),
    ("max-tokens-zero", "POST", CHAT, dict(body=chat(max_tokens=0)), 400, "max_tokens"),
    ("max-tokens-over-limit", "POST", CHAT, dict(body=chat(max_tokens=17)), 400, "max_tokens"),
    ("max-tokens-a-string", "POST", CHAT, dict(body=chat(max_tokens="3")), 400, "max_tokens"),
    ("n-too-many", "POST", CHAT, dict(body=chat(n=17)), 400, "n"),
    ("stop-five-strings", "POST", CHAT, dict(body=chat(stop=["a", "b", "c", "d", "e"])), 400, "stop"),
    ("stop-not-strings", "POST", CHAT, dict(body=chat(stop=[1])), 400, "stop.0"),
    ("stream-a-string", "POST", CHAT, dict(body=chat(stream="yes")), 400, "stream"),
    ("stream-options-a-string", "POST", CHAT, dict(body=chat(stream=True, stream_options="x")), 400, "stream_options"),
    ("seed-past-64-bits", "POST", CHAT, dict(body=chat(seed=2**70)), 400, "seed"),
    ("best-of-asked", "POST", CHAT, dict(body=chat(best_of=3)), 400, "best_of"),
    ("logit-bias-not-a-token-id", "POST", CHAT, dict(body=chat(logit_bias={"hello": 5})), 400, "logit_bias"),
    ("logit-bias-past-the-vocabulary", "POST", CHAT, dict(body=chat(logit_bias={"999999": 5})), 400,
     "logit_bias.999999"),
    ("top-logprobs-without-logprobs", "POST", CHAT, dict(body=chat(top_logprobs=3)), 400, "top_logprobs"),
    ("tools-asked", "POST", CHAT, dict(body=chat(tools=[{"type": "function", "function": {"name": "f"}}])),
     400, "tools"),
    ("model-empty", "POST", CHAT, dict(body={"model": "", "messages": [{"role": "user", "content": "hi"}]}), 400, "model"),
    ("model-unknown", "POST", CHAT, dict(body=chat(model="gpt-5")), 404, "model"),
    ("model-a-number", "POST", CHAT, dict(body=chat(model=5)), 400, "model"),
    ("prompt-too-long", "POST", CHAT, dict(body=msgs({"role": "user", "content": "hi " * 80})), 400, "messages"),
    ("prompt-empty", "POST", COMPLETIONS, dict(body={"model": "tiny", "prompt": "", "max_tokens": 2}), 400, "prompt"),
    ("prompt-empty-list", "POST", COMPLETIONS, dict(body={"model": "tiny", "prompt": []}), 400, "prompt"),
    ("prompts-times-n-too-many", "POST", COMPLETIONS,
     dict(body={"model": "tiny", "prompt": ["a"] * 100, "n": 2, "max_tokens": 1}), 400, "n"),
    ("prompt-negative-token-id", "POST", COMPLETIONS, dict(body={"model": "tiny", "prompt": [1, -2]}), 400, "prompt"),
    ("echo-streamed", "POST", COMPLETIONS, dict(body={"model": "tiny", "prompt": "hi", "echo": True, "stream": True}),
     400, "echo"),
    ("suffix-asked", "POST", COMPLETIONS, dict(body={"model": "tiny", "prompt": "hi", "suffix": "end"}), 400, "suffix"),
    ("prompt-token-past-the-vocabulary", "POST", COMPLETIONS, dict(body={"model": "tiny", "prompt": [[3, 4], [5, 999999]]}),
     400, "prompt.1"),
    ("embedding-input-empty", "POST", EMBEDDINGS, dict(body={"model": "tiny", "input": ""}), 400, "input"),
    ("embedding-input-empty-list", "POST", EMBEDDINGS, dict(body={"model": "tiny", "input": []}), 400, "input"),
    ("embedding-format-unknown", "POST", EMBEDDINGS,
     dict(body={"model": "tiny", "input": "a", "encoding_format": "int8"}), 400, "encoding_format"),
    ("classify-a-generator", "POST", "/v1/classify", dict(body={"model": "tiny", "input": "good"}), 400, "model"),
    ("body-over-limit", "POST", CHAT, dict(body=msgs({"role": "user", "content": "x" * 300_000})), 413, "larger than"),
    ("no-api-key", "POST", CHAT, dict(body=chat(), key=None), 401, "API key"),
    ("wrong-api-key", "POST", CHAT, dict(body=chat(), key="sk-wrong"), 401, "API key"),
    ("adapter-name-a-path", "POST", "/admin/adapters", dict(body={"name": "../x", "path": "alpha"}), 400, "name"),
    ("adapter-path-outside", "POST", "/admin/adapters", dict(body={"name": "x", "path": "../../etc"}), 403, "path"),
    ("adapter-path-absolute", "POST", "/admin/adapters", dict(body={"name": "x", "path": "/etc"}), 403, "path"),
    ("wrong-method", "GET", CHAT, dict(), 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("method, path, kwargs, status, field", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_malformed_request_gets_a_4xx_naming_the_field(served, method, path, kwargs, status, field):
    got, text = call(served.port, method, path, **kwargs)
    assert got == status, text
    err = json.loads(text)["error"]
    assert set(err) == {"message", "type", "code", "param"} and err["type"].endswith("_error")
    assert err["param"] == field or field in err["message"], err
    ok, answer = call(served.port, "POST", CHAT, chat())
    assert ok == 200 and json.loads(answer)["choices"][0]["message"]["role"] == "assistant"
    assert "Traceback" not in served.log()


def test_table_covers_enough_distinct_requests():
    assert len({r[0] for r in ROWS}) == len(ROWS) >= 25


# --- lmforge serve settings -------------------------------------------------------------------


@pytest.fixture
def user_dir(tiny_llama_dir, tmp_path):
    shutil.copytree(tiny_llama_dir, tmp_path / "model")
    (tmp_path / "model" / "alpha").mkdir()
    (tmp_path / "bad.yaml").write_text("port: [1\n")
    return tmp_path


@pytest.mark.parametrize("args, needles", [
    (["adapters.../x=alpha"], ["adapters"]),
    (["adapters.a\\b=alpha"], ["adapters", "not an adapter name"]),
    (["adapters.-x=alpha"], ["adapters", "not an adapter name"]),
    (["adapters.x=../../etc"], ["adapters.x", "'..'"]),
    (["adapters.x=/etc"], ["adapters.x", "relative"]),
    (["adapters.x=alpha"], ["serve.adapters.x", "adapter_config.json"]),
    (["adapters.x=missing"], ["serve.adapters.x", "adapter_config.json"]),
    (["host=999.1.1.1"], ["serve.host"]),
    (["limits.max_queue=-1"], ["limits.max_queue"]),
    (["dtype=int4"], ["dtype", "auto|float32|bfloat16|float16"]),
    (["--config", "{root}/bad.yaml"], ["bad.yaml:2", "invalid YAML"]),
])
def test_bad_serve_setting_exits_2_naming_it(user_dir, args, needles):
    before = snapshot(user_dir)
    args = [a.replace("{root}", str(user_dir)) for a in args]
    proc = run_cli("serve", str(user_dir / "model"), *args, cwd=user_dir, timeout=120)
    assert proc.returncode == 2, proc.stdout[-500:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    assert snapshot(user_dir) == before


def test_int8_serving_of_an_encoder_exits_2_naming_the_setting(tiny_bert_dir, tmp_path):
    shutil.copytree(tiny_bert_dir, tmp_path / "encoder")
    before = snapshot(tmp_path)
    proc = run_cli("serve", str(tmp_path / "encoder"), "dtype=int8", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "serve.dtype" in proc.stderr and "encoder" in proc.stderr and "auto or float32" in proc.stderr, proc.stderr
    assert snapshot(tmp_path) == before


def test_taken_port_exits_2_naming_it(user_dir):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        before = snapshot(user_dir)
        proc = run_cli("serve", str(user_dir / "model"), f"port={taken.getsockname()[1]}", cwd=user_dir)
    finally:
        taken.close()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "serve.port" in proc.stderr and "in use" in proc.stderr, proc.stderr
    assert "serving" not in proc.stdout
    assert snapshot(user_dir) == before
