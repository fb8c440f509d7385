"""Several LoRA adapters over one base, chosen by "model"; hot add/remove; no loading outside models_dir."""

from __future__ import annotations

import pytest

from tests.unit.serve.conftest import http

PROMPT = "what is the interest rate of the bank"


def greedy(server, model: str | None) -> str:
    request = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0} | ({"model": model} if model else {})
    status, body = http("POST", server.url + "/v1/completions", request)
    assert status == 200, body
    assert body["model"] == (model or "tiny")
    return body["choices"][0]["text"]


def test_model_field_selects_the_adapter_and_base_is_unchanged(server):
    base1 = greedy(server, "tiny")
    alpha = greedy(server, "alpha")
    assert alpha != base1
    assert greedy(server, "tiny") == base1  # disabling the adapter restores the base exactly
    assert greedy(server, None) == base1  # no "model": the base (as vLLM does), with the adapters off
    status, body = http("POST", server.url + "/v1/completions", {"model": "", "prompt": PROMPT})
    assert status == 400 and body["error"]["param"] == "model"  # an empty name is a mistake, not "the base"


def test_admin_adds_and_removes_an_adapter_without_restart(server):
    status, body = http("POST", server.url + "/admin/adapters", {"name": "beta", "path": "beta"})
    assert status == 201 and "beta" in body["models"]
    try:
        outs = {greedy(server, m) for m in ("tiny", "alpha", "beta")}
        assert len(outs) == 3
        status, _ = http("POST", server.url + "/admin/adapters", {"name": "beta", "path": "beta"})
        assert status == 409
    finally:
        status, body = http("DELETE", server.url + "/admin/adapters/beta")
    assert status == 200 and "beta" not in body["models"]
    status, body = http("POST", server.url + "/v1/completions", {"model": "beta", "prompt": "hi"})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert greedy(server, "alpha") != greedy(server, "tiny")


@pytest.mark.parametrize("path, status", [("../alpha", 403), ("/etc", 403), ("alpha/../../x", 403),
                                           ("notes", 400), ("does-not-exist", 400)])
def test_adapter_paths_outside_models_dir_are_refused(server, path, status):
    got, body = http("POST", server.url + "/admin/adapters", {"name": "evil", "path": path})
    assert got == status and "error" in body
    assert "evil" not in server.state.store.adapters


def test_symlink_out_of_models_dir_is_refused(server, models_dir, tmp_path):
    (models_dir / "link").symlink_to(tmp_path)
    try:
        got, body = http("POST", server.url + "/admin/adapters", {"name": "evil", "path": "link"})
        assert got == 403 and body["error"]["code"] == "path_forbidden"
    finally:
        (models_dir / "link").unlink()


def test_admin_needs_the_key(server):
    got, body = http("POST", server.url + "/admin/adapters", {"name": "x", "path": "beta"}, key=None)
    assert got == 401
    got, _ = http("DELETE", server.url + "/admin/adapters/alpha", key="bad")
    assert got == 401 and "alpha" in server.state.store.adapters
