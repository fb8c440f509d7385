"""presence_penalty, frequency_penalty, logit_bias (OpenAI) and repetition_penalty (vLLM's extension) reach the
decoder: the served answer equals lmforge's generation engine run in-process with the same settings."""

from __future__ import annotations

import openai
import pytest

from lmforge.model.generate import Sampling, generate_tokens
from tests.unit.serve.conftest import KEY, http

MESSAGES = [{"role": "user", "content": "what is the interest rate of the bank"}]


@pytest.fixture
def client(fp32_server):
    return openai.OpenAI(base_url=f"{fp32_server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def in_process(server, sampling: Sampling, n: int = 8) -> str:
    state = server.state
    tok = state.store.tokenizer
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with state.store.lock, state.store.activate("tiny"):
        result = generate_tokens(state.store.model, [ids], max_new_tokens=n, stop_ids=state.engine.stop_ids,
                                 pad_id=state.engine.pad_id, sampling=sampling, precision="model")[0]
    return tok.decode(result.tokens, skip_special_tokens=True)


def test_penalties_and_bias_decode_as_in_process(client, fp32_server):
    tok = fp32_server.state.store.tokenizer
    plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0)
    first = tok(plain.choices[0].message.content, add_special_tokens=False)["input_ids"][0]
    bank = tok.convert_tokens_to_ids("bank")
    cases = [
        (dict(frequency_penalty=2.0), Sampling(frequency_penalty=2.0)),
        (dict(presence_penalty=1.5, frequency_penalty=-0.5), Sampling(presence_penalty=1.5, frequency_penalty=-0.5)),
        (dict(logit_bias={str(first): -100}), Sampling(logit_bias=((first, -100.0),))),
        (dict(logit_bias={str(bank): 100}), Sampling(logit_bias=((bank, 100.0),))),
        (dict(extra_body={"repetition_penalty": 3.0}), Sampling(repetition_penalty=3.0)),
    ]
    for params, sampling in cases:
        got = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0, **params)
        assert got.choices[0].message.content == in_process(fp32_server, sampling), params
        assert got.choices[0].message.content != plain.choices[0].message.content, params  # it changed the answer
    forced = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0,
                                            logit_bias={str(bank): 100}, logprobs=True)
    assert [e.token for e in forced.choices[0].logprobs.content] == ["bank"] * 4


@pytest.mark.parametrize("body,field", [
    ({"logit_bias": {"hello": 5}}, "logit_bias"),
    ({"logit_bias": {"5": 101}}, "logit_bias.5"),
    ({"logit_bias": {"999999": 1}}, "logit_bias.999999"),
    ({"logit_bias": {str(i): 1 for i in range(1025)}}, "logit_bias"),
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"best_of": 2}, "best_of"),
])
def test_bad_penalty_and_bias_fields(fp32_server, body, field):
    status, got = http("POST", f"{fp32_server.url}/v1/completions",
                       {"model": "tiny", "prompt": "the bank", "max_tokens": 2, **body})
    assert status == 400 and got["error"]["param"] == field, got
