"""Token log-probabilities from the live server (chat ``logprobs``/``top_logprobs``, legacy ``logprobs: k``),
checked against a plain forward pass of the same model, and the exact bytes of byte-level BPE tokens."""

from __future__ import annotations

import math

import openai
import pytest
import torch

from tests.unit.serve.conftest import KEY, http

# The fp32_server fixture keeps fp32 weights on every CPU (serve.dtype: auto would pick bf16 where it is native,
# and bf16's 8-bit mantissa says nothing about whether the right numbers are reported). It decodes with a KV
# cache, one token per step; the reference below runs one full forward over the prompt and the answer. Both are
# fp32 sums of the same products in different orders and groupings: this 2-layer, hidden-32 model's logits (below
# 1 in magnitude) then differ by a few float32 ulps (~1e-7 each), and a log-softmax adds one logsumexp of the same
# error. 1e-4 leaves a wide margin over that and stays far below the gaps between tokens' log-probabilities (a few
# 1e-2 here), so a wrong position or token fails. A sum of k such values is within k x 1e-4.
TOL = 1e-4
CHAT_KW = dict(model="tiny", messages=[{"role": "user", "content": "what is the interest rate of the bank"}],
               max_tokens=8)


@pytest.fixture
def server(fp32_server):
    return fp32_server


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def reference(server, prompt_ids: list[int], answer_ids: list[int], name: str = "tiny") -> torch.Tensor:
    """log-softmax of the served model's (or adapter's) logits over the answer's positions, by one forward pass."""
    store = server.state.store
    ids = torch.tensor([prompt_ids + answer_ids])
    with store.lock, torch.no_grad(), store.activate(name):
        logits = store.model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits, dim=-1)


def chat_prompt(server) -> list[int]:
    tok = server.state.store.tokenizer
    text = tok.apply_chat_template(CHAT_KW["messages"], tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


def answer_ids(server, tokens: list[str]) -> list[int]:
    return server.state.store.tokenizer.convert_tokens_to_ids(tokens)


@pytest.mark.parametrize("name,temperature", [("tiny", 0.0), ("tiny", 1.5), ("alpha", 0.0)])
def test_chat_logprobs_are_the_models_own(client, server, name, temperature):
    r = client.chat.completions.create(logprobs=True, top_logprobs=3, temperature=temperature, seed=3,
                                       **{**CHAT_KW, "model": name})
    choice = r.choices[0]
    content = choice.logprobs.content
    assert len(content) == r.usage.completion_tokens > 0
    ids = answer_ids(server, [c.token for c in content])
    ref = reference(server, chat_prompt(server), ids, name)
    for pos, entry in enumerate(content):
        # the raw distribution, before temperature: a sampled token's log-probability is the model's
        assert abs(entry.logprob - ref[pos, ids[pos]].item()) < TOL
        assert entry.bytes == list(entry.token.encode())
        best = ref[pos].topk(3)
        assert [t.token for t in entry.top_logprobs] == server.state.store.tokenizer.convert_ids_to_tokens(
            best.indices.tolist())
        assert all(abs(t.logprob - v) < TOL for t, v in zip(entry.top_logprobs, best.values.tolist()))
    if temperature == 0:  # greedy picks the most likely token: its entry is the first alternative
        assert all(e.token == e.top_logprobs[0].token and e.logprob == e.top_logprobs[0].logprob for e in content)


def test_chat_without_top_logprobs_and_without_logprobs(client):
    plain = client.chat.completions.create(temperature=0, **CHAT_KW).choices[0]
    assert plain.logprobs is None
    asked = client.chat.completions.create(temperature=0, logprobs=True, **CHAT_KW).choices[0]
    assert asked.message.content == plain.message.content  # asking changes nothing in the answer
    assert asked.logprobs.content and all(e.top_logprobs == [] for e in asked.logprobs.content)
    assert all(e.logprob <= 0 for e in asked.logprobs.content)


def test_streamed_logprobs_equal_the_whole_answers(client):
    kw = dict(temperature=0, logprobs=True, top_logprobs=2, n=2, **CHAT_KW)
    whole = client.chat.completions.create(**kw)
    streamed: dict[int, list] = {0: [], 1: []}
    for chunk in client.chat.completions.create(stream=True, **kw):
        for c in chunk.choices:
            if c.logprobs is not None:
                streamed[c.index].extend(c.logprobs.content)
    for choice in whole.choices:
        assert [(e.token, e.logprob, [t.logprob for t in e.top_logprobs]) for e in streamed[choice.index]] == \
            [(e.token, e.logprob, [t.logprob for t in e.top_logprobs]) for e in choice.logprobs.content]


def test_legacy_completion_logprobs(client, server):
    prompt = "the price of the stock is"
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    n = r.usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n > 0
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    assert all(o <= len(r.choices[0].text) for o in lp.text_offset)
    tok = server.state.store.tokenizer
    ref = reference(server, tok(prompt)["input_ids"], tok.convert_tokens_to_ids(lp.tokens))
    for pos, (token, value, top) in enumerate(zip(lp.tokens, lp.token_logprobs, lp.top_logprobs)):
        assert abs(value - ref[pos, tok.convert_tokens_to_ids(token)].item()) < TOL
        assert len(top) == 2 and max(top.values()) == value  # greedy: the chosen token is the likeliest
    zero = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0, logprobs=0)
    assert zero.choices[0].logprobs.token_logprobs == lp.token_logprobs
    assert all(t == {} for t in zero.choices[0].logprobs.top_logprobs)


def test_legacy_offsets_end_at_a_stop_string(client, server):
    prompt = "the price of the stock is"
    full = client.completions.create(model="tiny", prompt=prompt, max_tokens=8, temperature=0, logprobs=0)
    words = full.choices[0].text.split()
    assert len(words) >= 3
    cut = client.completions.create(model="tiny", prompt=prompt, max_tokens=8, temperature=0, logprobs=0,
                                    stop=[words[2]])
    text, lp = cut.choices[0].text, cut.choices[0].logprobs
    assert cut.choices[0].finish_reason == "stop" and len(text) < len(full.choices[0].text)
    assert len(lp.tokens) == cut.usage.completion_tokens and max(lp.text_offset) <= len(text)


@pytest.mark.parametrize("body,field", [
    ({"top_logprobs": 2}, "top_logprobs"),  # alternatives without logprobs: true
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"logprobs": 1}, "logprobs"),  # chat's logprobs is a boolean
])
def test_bad_chat_logprobs_fields(server, body, field):
    status, got = http("POST", f"{server.url}/v1/chat/completions", {**CHAT_KW, **body})
    assert status == 400 and got["error"]["param"] == field


@pytest.mark.parametrize("value", [True, -1, 21, "2"])
def test_bad_legacy_logprobs(server, value):
    status, got = http("POST", f"{server.url}/v1/completions", {"model": "tiny", "prompt": "the bank", "logprobs": value})
    assert status == 400 and got["error"]["param"] == "logprobs"


def test_byte_level_tokens_carry_their_exact_bytes(smollm2_dir):
    from transformers import AutoTokenizer

    from lmforge.serve.logprobs import TokenPieces

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    pieces = TokenPieces(tok)
    assert pieces.byte_level
    text = "Café ☃ costs 5€ 🙂, said José."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    parts = [pieces.piece(i) for i in ids]
    assert any(t.endswith("\ufffd") for t, _ in parts)  # some token holds only part of a character ...
    assert bytes(b for _, raw in parts for b in raw).decode("utf-8") == text  # ... and its bytes are exact
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert pieces.piece(end) == ("<|im_end|>", list(b"<|im_end|>"))


def test_logprobs_sum_to_at_most_one(client):
    r = client.chat.completions.create(temperature=0, logprobs=True, top_logprobs=20, **CHAT_KW)
    for entry in r.choices[0].logprobs.content:
        assert sum(math.exp(t.logprob) for t in entry.top_logprobs) <= 1 + 1e-5


PROMPT = "the price of the stock is"


def test_echo_scores_the_prompt_as_lm_eval_asks(client, server):
    """lm-evaluation-harness' local-completions loglikelihood request: token ids, max_tokens 1, logprobs 1,
    echo. The prompt's tokens come back scored by the model (the first one null), then the answer's."""
    tok = server.state.store.tokenizer
    ids = tok(PROMPT)["input_ids"]
    body = {"model": "tiny", "prompt": [ids], "max_tokens": 1, "logprobs": 1, "echo": True, "temperature": 0, "seed": 1234}
    status, got = http("POST", f"{server.url}/v1/completions", body)
    assert status == 200, got
    lp = got["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(ids) + 1
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    answer = tok.convert_tokens_to_ids(lp["tokens"][-1])
    ref = reference(server, ids[:1], ids[1:] + [answer])
    for pos, value in enumerate(lp["token_logprobs"][1:]):
        target = (ids[1:] + [answer])[pos]
        assert abs(value - float(ref[pos, target])) < TOL
        assert len(lp["top_logprobs"][pos + 1]) == 1
    ctxlen = 3  # lm-eval sums the continuation's tokens: token_logprobs[ctxlen:-1], here 3 of them
    continuation = float(sum(ref[p - 1, ids[p]] for p in range(ctxlen, len(ids))))
    assert abs(sum(lp["token_logprobs"][ctxlen:-1]) - continuation) < 3 * TOL


def test_echo_of_text_and_of_token_ids(client, server):
    tok = server.state.store.tokenizer
    ids = tok(PROMPT)["input_ids"]
    plain = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, temperature=0, logprobs=2)
    echoed = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, temperature=0, logprobs=2, echo=True)
    answer = plain.choices[0].text
    assert echoed.choices[0].text == PROMPT + answer
    lp = echoed.choices[0].logprobs
    n = len(ids)
    assert lp.tokens[n:] == plain.choices[0].logprobs.tokens
    assert lp.token_logprobs[n:] == plain.choices[0].logprobs.token_logprobs  # asking for the prompt changes nothing
    offsets = [start for start, _ in tok(PROMPT, return_offsets_mapping=True)["offset_mapping"]]
    assert lp.text_offset[:n] == offsets
    assert lp.text_offset[n:] == [len(PROMPT) + o for o in plain.choices[0].logprobs.text_offset]
    by_ids = client.completions.create(model="tiny", prompt=[ids, ids[:2]], max_tokens=4, temperature=0, logprobs=2,
                                       echo=True)
    assert by_ids.choices[0].logprobs.token_logprobs == lp.token_logprobs
    assert by_ids.choices[1].text.startswith(tok.decode(ids[:2]))
    no_logprobs = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, temperature=0, echo=True)
    assert no_logprobs.choices[0].text == PROMPT + answer and no_logprobs.choices[0].logprobs is None


def test_byte_offsets_of_token_ids_match_the_tokenizers(smollm2_dir):
    from transformers import AutoTokenizer

    from lmforge.serve.completion import _byte_offsets
    from lmforge.serve.logprobs import TokenPieces

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    text = "Café prices rose 5% (the bank's report) and José said: no."
    enc = tok(text, return_offsets_mapping=True)
    assert _byte_offsets(TokenPieces(tok), enc["input_ids"]) == [start for start, _ in enc["offset_mapping"]]


def test_a_completion_that_ends_on_eos_lists_it_last(client, server):
    """With max_tokens 1 a harness expects one entry after the prompt's even when the model ends at once: the
    legacy API lists the eos / end-of-turn token that ended it (chat's content does not)."""
    tok = server.state.store.tokenizer
    ids, eos = tok(PROMPT)["input_ids"], tok.eos_token_id
    body = {"model": "tiny", "prompt": ids, "max_tokens": 1, "logprobs": 1, "echo": True, "temperature": 0,
            "logit_bias": {str(eos): 100}}
    status, got = http("POST", f"{server.url}/v1/completions", body)
    assert status == 200, got
    choice = got["choices"][0]
    assert choice["finish_reason"] == "stop" and got["usage"]["completion_tokens"] == 0
    lp = choice["logprobs"]
    assert lp["tokens"][-1] == tok.eos_token and len(lp["tokens"]) == len(ids) + 1
    ref = reference(server, ids, [eos])
    assert abs(lp["token_logprobs"][-1] - float(ref[-1, eos])) < TOL  # the raw score, before the bias
    assert lp["text_offset"][-1] == len(choice["text"])
    unbiased = http("POST", f"{server.url}/v1/completions", {**body, "logit_bias": None})[1]["choices"][0]["logprobs"]
    assert lp["token_logprobs"][:-1] == unbiased["token_logprobs"][:-1]  # the prompt's scores: the same either way
    streamed = [c for c in client.completions.create(model="tiny", prompt=PROMPT, max_tokens=3, temperature=0,
                                                     logprobs=0, logit_bias={str(eos): 100}, stream=True)
                if c.choices and c.choices[0].logprobs is not None]
    assert [t for c in streamed for t in c.choices[0].logprobs.tokens] == [tok.eos_token]
    chat = client.chat.completions.create(logprobs=True, temperature=0, logit_bias={str(eos): 100}, **CHAT_KW)
    assert chat.choices[0].message.content == "" and chat.choices[0].logprobs.content == []


def test_example_scoring_config_serves_the_harness_request(tiny_llama_dir):
    """examples/serve/scoring.yaml validates, and a server built from it answers lm-eval's request in fp32."""
    from pathlib import Path

    from lmforge.config.serve import load_serve_config
    from lmforge.serve import create_app
    from tests.unit.serve.conftest import LiveServer

    example = Path(__file__).resolve().parents[3] / "examples" / "serve" / "scoring.yaml"
    cfg = load_serve_config(str(example), [])
    assert cfg.dtype == "float32" and not cfg.drift.enabled and cfg.host == "127.0.0.1"
    live = LiveServer(create_app(Path(tiny_llama_dir), cfg))
    try:
        ids = live.state.store.tokenizer(PROMPT)["input_ids"]
        status, got = http("POST", f"{live.url}/v1/completions", {"prompt": [ids], "max_tokens": 1, "logprobs": 1,
                                                                   "echo": True, "temperature": 0}, key=None)
        assert status == 200, got
        lp = got["choices"][0]["logprobs"]
        assert lp["token_logprobs"][0] is None and len(lp["token_logprobs"]) == len(ids) + 1
        assert next(live.state.store.model.parameters()).dtype == torch.float32 and live.state.recorder is None
    finally:
        live.stop()
