"""Under the default settings a burst of 50 simultaneous requests queues and is answered in full;
clients that leave mid-stream stop their generation and give their turn back."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.unit.serve.conftest import KEY, LiveServer, http

CHAT = "/v1/chat/completions"


def wait_for(condition, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
def default_server(tiny_llama_dir):
    """Default limits (max_concurrent 16, max_queue 256), only auth/logs/drift set for the test."""
    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app

    cfg = ServeConfig(api_keys=[KEY], model_name="tiny", log={"enabled": False}, drift={"enabled": False})
    live = LiveServer(create_app(Path(tiny_llama_dir), cfg))
    yield live
    live.stop()


def test_fifty_simultaneous_requests_all_answered_under_default_settings(default_server):
    state = default_server.state
    assert (state.cfg.limits.max_concurrent, state.cfg.limits.max_queue) == (16, 256)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello bank"}], "max_tokens": 3}
    state.store.lock.acquire()  # hold the engine so all 50 are in the server at once
    try:
        with ThreadPoolExecutor(50) as pool:
            futures = [pool.submit(http, "POST", default_server.url + CHAT, body) for _ in range(50)]
            wait_for(lambda: state.admission.used == 16 and state.admission.waiting() == 34)
            state.store.lock.release()
            results = [f.result() for f in futures]
    finally:
        if state.store.lock._is_owned():
            state.store.lock.release()
    assert [status for status, _ in results] == [200] * 50
    assert all(b["choices"][0]["message"]["role"] == "assistant" for _, b in results)
    assert state.admission.used == 0 and state.admission.waiting() == 0


@pytest.fixture
def slow_server(tiny_llama_dir):
    """Long generations (max_tokens 200) at >= 10 ms a token, jobs recorded with their final event."""
    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app

    cfg = ServeConfig(api_keys=[KEY], model_name="tiny", log={"enabled": False}, drift={"enabled": False},
                      limits={"max_tokens": 200, "max_prompt_tokens": 32})
    live = LiveServer(create_app(Path(tiny_llama_dir), cfg))
    state = live.state
    state.store.model.register_forward_hook(lambda *args: time.sleep(0.01))
    live.finished, live.submitted = [], []
    submit = state.engine.submit

    def recording_submit(job):
        emit = job.emit

        def recording_emit(kind, payload):
            if kind == "done":
                live.finished.append(payload)
            emit(kind, payload)

        job.emit = recording_emit
        live.submitted.append(job)
        submit(job)

    state.engine.submit = recording_submit
    yield live
    live.stop()


def _open_stream(server) -> socket.socket:
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200,
                       "temperature": 0, "stream": True, "stop": ["never-said"]}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return sock


def _ignore_eos(server) -> None:
    server.state.engine.stop_ids = set()  # the random tiny model may emit eos early; run to max_tokens


def test_client_leaving_mid_stream_cancels_generation_and_frees_its_turn(slow_server):
    _ignore_eos(slow_server)
    sock = _open_stream(slow_server)
    received = b""
    while received.count(b"data: ") < 3:  # role chunk + two tokens: generation is under way
        received += sock.recv(4096)
    sock.close()
    wait_for(lambda: slow_server.finished)
    done = slow_server.finished[0]
    # an abandoned stream would run to 200 tokens ("length"): the engine saw the cancellation
    assert done["finish_reason"] == "cancelled" and done["completion_tokens"] < 200
    wait_for(lambda: slow_server.state.admission.used == 0)
    status, body = http("POST", slow_server.url + CHAT,
                        {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert status == 200


def test_client_leaving_before_the_first_chunk_frees_its_turn(slow_server):
    _ignore_eos(slow_server)
    for _ in range(5):
        sock = _open_stream(slow_server)
        sock.close()  # gone before the response started
    wait_for(lambda: len(slow_server.submitted) == 5)  # every request reached the engine ...
    wait_for(lambda: slow_server.state.admission.used == 0 and slow_server.state.engine.depth() == 0)
    assert all(job.cancelled for job in slow_server.submitted)  # ... and was called off
    # jobs the engine had started end "cancelled"; queued ones are dropped without running
    assert {d["finish_reason"] for d in slow_server.finished} <= {"cancelled"}
    assert sum(d["completion_tokens"] for d in slow_server.finished) < 200


def test_stream_ends_with_done_when_the_client_stays(slow_server):
    status, text = http("POST", slow_server.url + CHAT,
                        {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                         "stream": True})
    assert status == 200 and text.rstrip().endswith("data: [DONE]")
    assert slow_server.finished[-1]["finish_reason"] in ("stop", "length")
    wait_for(lambda: slow_server.state.admission.used == 0)


def test_owned_stream_cleans_up_even_when_the_body_never_starts():
    """A client gone before the first chunk: Starlette cancels the response before the body
    generator runs, so the generator's own ``finally`` never runs; OwnedStream's cleanup does."""
    import asyncio

    from lmforge.serve.completion import OwnedStream

    log: list[str] = []

    async def body():
        try:
            log.append("started")
            yield "x"
        finally:
            log.append("body finally")

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        await asyncio.sleep(0)

    response = OwnedStream(body(), lambda: log.append("on_close"), media_type="text/plain")
    asyncio.run(response({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send))
    assert log == ["on_close"]  # the turn is released although the body never ran
