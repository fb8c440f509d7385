"""N concurrent clients all succeed, are batched together, and match the unbatched answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.unit.serve.conftest import http

PROMPTS = ["good food", "the bank loan interest rate is bad", "hello", "what is the capital of france",
           "i love this product", "tax", "buy and sell stock and bond fund", "yes no"]


def ask(server, prompt: str, model: str = "tiny") -> str:
    status, body = http("POST", server.url + "/v1/completions",
                        {"model": model, "prompt": prompt, "max_tokens": 6, "temperature": 0})
    assert status == 200, body
    return body["choices"][0]["text"]


def test_concurrent_clients_succeed_batched_and_match_sequential(server):
    alone = [ask(server, p) for p in PROMPTS]
    before = server.state.metrics.batch_size.collect()[0].samples
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: ask(server, p), PROMPTS * 2))
    assert together == alone * 2  # left-padded batches give the same greedy text
    sizes = {s.labels.get("le"): s.value for s in server.state.metrics.batch_size.collect()[0].samples
             if s.name.endswith("_bucket")}
    old = {s.labels.get("le"): s.value for s in before if s.name.endswith("_bucket")}
    assert sizes["1.0"] - old["1.0"] < len(PROMPTS) * 2  # at least one batch held several requests


def test_mixed_models_in_flight(server):
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda m: ask(server, "hello bank", m), ["tiny", "alpha"] * 3))
    assert len(set(outs[0::2])) == 1 and len(set(outs[1::2])) == 1 and outs[0] != outs[1]
