"""The official openai client against a real running server (chat, streaming, completions, models, auth)."""

from __future__ import annotations

import json
import subprocess

import openai
import pytest

from tests.unit.serve.conftest import KEY, http


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_models_lists_base_and_adapters(client):
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == "tiny" and "alpha" in ids


def test_chat_completion_has_text_usage_and_finish_reason(client):
    msgs = [{"role": "user", "content": "what is the capital of france"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=5, temperature=0)
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    if choice.finish_reason == "length":
        assert r.usage.completion_tokens == 5


def test_greedy_is_deterministic_and_seeded_sampling_repeats(client):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=6)
    a = client.chat.completions.create(temperature=0, **kw).choices[0].message.content
    b = client.chat.completions.create(temperature=0, **kw).choices[0].message.content
    assert a == b
    s1 = client.chat.completions.create(temperature=1.5, top_p=0.9, seed=7, **kw).choices[0].message.content
    s2 = client.chat.completions.create(temperature=1.5, top_p=0.9, seed=7, **kw).choices[0].message.content
    assert s1 == s2


def test_streaming_chunks_join_to_the_non_streamed_answer(client):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "tell me about the bank"}], max_tokens=8,
              temperature=0)
    full = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_completions_single_and_batch_of_prompts(client):
    r = client.completions.create(model="tiny", prompt="the price of the stock is", max_tokens=4, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.prompt_tokens == 6
    many = client.completions.create(model="tiny", prompt=["good food", "bad bank"], max_tokens=3, temperature=0)
    assert [c.index for c in many.choices] == [0, 1]


def test_stop_string_is_honoured(client):
    kw = dict(model="tiny", prompt="one two three", max_tokens=12, temperature=0)
    text = client.completions.create(**kw).choices[0].text
    words = text.split()
    assert len(words) >= 3, f"the fixed-seed tiny model must continue with 3+ words to plant a stop word: {text!r}"
    stopped = client.completions.create(stop=[words[2]], **kw).choices[0]
    assert words[2] not in stopped.text.split()[2:3]
    assert stopped.finish_reason == "stop" and len(stopped.text) < len(text)


def test_auth_and_unknown_model_errors(server, client):
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.models.list()
    assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found"
    status, body = http("GET", f"{server.url}/v1/models", key=None)
    assert status == 401 and body["error"]["type"] == "authentication_error"


def test_curl_streams_server_sent_events(server):
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                       "stream": True, "temperature": 0})
    out = subprocess.run(
        ["curl", "-sS", "-N", "--max-time", "60", "-H", f"Authorization: Bearer {KEY}", "-H",
         "Content-Type: application/json", "-d", body, f"{server.url}/v1/chat/completions"],
        capture_output=True, text=True, check=True,
    ).stdout
    events = [line[len("data: "):] for line in out.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_n_answers_per_prompt_numbered_as_openai_does(client):
    """n: several answers to one prompt (each sampled on its own; with a seed, answer j uses seed + j, so the
    request repeats and its answers differ), in non-streamed and streamed responses, and per prompt of a batch."""
    kw = dict(model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=6)
    r = client.chat.completions.create(temperature=1.5, top_p=0.9, seed=7, n=3, **kw)
    texts = [c.message.content for c in r.choices]
    assert [c.index for c in r.choices] == [0, 1, 2] and len(set(texts)) > 1
    again = client.chat.completions.create(temperature=1.5, top_p=0.9, seed=7, n=3, **kw)
    assert [c.message.content for c in again.choices] == texts
    single = client.chat.completions.create(temperature=1.5, top_p=0.9, seed=7, **kw).choices[0].message.content
    assert texts[0] == single  # answer 0 is the n=1 answer
    greedy = client.chat.completions.create(temperature=0, n=2, **kw)
    one = client.chat.completions.create(temperature=0, **kw)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content == one.choices[0].message.content
    assert greedy.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt once (as OpenAI), every answer
    assert greedy.usage.completion_tokens == 2 * one.usage.completion_tokens
    chunks = list(client.chat.completions.create(temperature=0, n=2, stream=True,
                                                 stream_options={"include_usage": True}, **kw))
    for index in (0, 1):
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == index)
        assert text == greedy.choices[index].message.content
    finishes = [c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason]
    assert sorted(finishes) == [0, 1]
    assert chunks[-1].usage.completion_tokens == greedy.usage.completion_tokens

    many = client.completions.create(model="tiny", prompt=["good food", "bad bank"], max_tokens=3, temperature=0, n=2)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert many.choices[0].text == many.choices[1].text and many.choices[2].text == many.choices[3].text
