"""Every kind of bad request gets the right status with an OpenAI-style JSON error; the server keeps serving."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.unit.serve.conftest import KEY, LiveServer, http, http_with_headers

CHAT = "/v1/chat/completions"


def chat_body(**kw):
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **kw}


def assert_error(status, body, want_status, want_code=None):
    assert status == want_status, body
    assert set(body["error"]) >= {"message", "type", "code"}
    if want_code:
        assert body["error"]["code"] == want_code


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        (dict(raw=b"{not json"), 400, "invalid_json"),
        (dict(raw=b"[1, 2]"), 400, "invalid_body"),
        (dict(body={"model": "tiny"}), 400, "invalid_request"),
        (dict(body=chat_body(temperature=5)), 400, "invalid_request"),
        (dict(body=chat_body(max_tokens=17)), 400, "max_tokens_too_large"),
        (dict(body=chat_body(messages=[{"role": "user", "content": "hi " * 80}])), 400, "context_length_exceeded"),
        (dict(body=chat_body(messages=[{"role": "user", "content": "x" * 5000}])), 413, "body_too_large"),
        (dict(body=chat_body(model="missing")), 404, "model_not_found"),
        (dict(body=chat_body(), key=None), 401, "missing_api_key"),
        (dict(body=chat_body(), key="bad"), 401, "invalid_api_key"),
    ],
)
def test_bad_request_answered_with_json_error(server, kwargs, status, code):
    got_status, body = http("POST", server.url + CHAT, **kwargs)
    assert_error(got_status, body, status, code)
    ok_status, ok = http("POST", server.url + CHAT, chat_body())
    assert ok_status == 200 and ok["object"] == "chat.completion"


def test_chunked_body_over_the_limit_is_413(server):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", CHAT)
    conn.putheader("Authorization", f"Bearer {KEY}")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for _ in range(5):
        piece = b"x" * 1000
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 413


def test_unknown_route_and_embeddings_on_a_generator(server):
    status, body = http("GET", server.url + "/v1/nothing")
    assert_error(status, body, 404)
    status, body = http("POST", server.url + "/v1/classify", {"model": "tiny", "input": "good"})
    assert_error(status, body, 400, "not_a_classifier")


@pytest.fixture
def strict_server(tiny_llama_dir):
    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app

    cfg = ServeConfig(api_keys=[KEY], model_name="tiny", log={"enabled": False}, drift={"enabled": False},
                      limits={"max_concurrent": 1, "max_queue": 1, "request_timeout_s": 0.5, "max_tokens": 4})
    live = LiveServer(create_app(Path(tiny_llama_dir), cfg))
    yield live
    live.stop()


def _wait_for(condition, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def test_full_queue_503_with_retry_after_and_timeout_504(strict_server):
    adm = strict_server.state.admission
    lock = strict_server.state.store.lock
    lock.acquire()  # the engine cannot run: the first request holds the only turn, the second waits
    try:
        early: list = []
        threads = [threading.Thread(target=lambda: early.append(http("POST", strict_server.url + CHAT, chat_body())))
                   for _ in range(2)]
        threads[0].start()
        _wait_for(lambda: adm.used == 1)
        threads[1].start()
        _wait_for(lambda: adm.waiting() == 1)
        status, body, headers = http_with_headers("POST", strict_server.url + CHAT, chat_body())
        assert_error(status, body, 503, "server_busy")
        assert int(headers["retry-after"]) >= 1
        for t in threads:
            t.join(timeout=10)
        for got in early:  # both ran out of time: one in the engine, one still waiting for its turn
            assert_error(*got, 504, "timeout")
    finally:
        lock.release()
    assert adm.used == 0 and adm.waiting() == 0
    status, body = http("POST", strict_server.url + CHAT, chat_body())
    assert status == 200 and body["choices"][0]["message"]["role"] == "assistant"
    status, metrics = http("GET", strict_server.url + "/metrics")
    assert 'lmforge_requests_total{endpoint="/v1/chat/completions",status="503"} 1.0' in metrics
    assert 'lmforge_errors_total{code="timeout"} 2.0' in metrics


def test_binds_loopback_by_default():
    from lmforge.config.serve import ServeConfig

    assert ServeConfig().host == "127.0.0.1"


def test_stream_past_the_timeout_ends_with_an_error_event(strict_server):
    import json

    lock = strict_server.state.store.lock
    lock.acquire()
    try:
        status, text = http("POST", strict_server.url + CHAT, chat_body(stream=True))
    finally:
        lock.release()
    assert status == 200
    events = [e[len("data: "):] for e in text.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "timeout"
    _wait_for(lambda: strict_server.state.admission.used == 0)
