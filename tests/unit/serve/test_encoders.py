"""/v1/embeddings (mean pooling) and /v1/classify on tiny BERT models."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import openai
import pytest

from tests.unit.serve.conftest import LiveServer, http


@pytest.fixture(scope="module")
def bert_server(tiny_bert_dir):
    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app

    live = LiveServer(create_app(Path(tiny_bert_dir), ServeConfig(model_name="enc", log={"enabled": False})))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def classifier_server(tiny_bert_dir, tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app

    out = tmp_path_factory.mktemp("clf")
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2,
                                                          id2label={0: "negative", 1: "positive"},
                                                          label2id={"negative": 0, "positive": 1})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(out)
    window = out / "traffic.jsonl"
    live = LiveServer(create_app(out, ServeConfig(model_name="clf", log={"enabled": False}), window_file=window))
    yield live, window
    live.stop()


def test_embeddings_with_openai_client_match_mean_pooling(bert_server, tiny_bert_dir):
    import torch
    from transformers import AutoModel, AutoTokenizer

    client = openai.OpenAI(base_url=f"{bert_server.url}/v1", api_key="none", max_retries=0)
    r = client.embeddings.create(model="enc", input=["good food", "the bank is bad"])
    assert len(r.data) == 2 and r.usage.prompt_tokens > 4
    tok, model = AutoTokenizer.from_pretrained(tiny_bert_dir), AutoModel.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        h = model(**tok(["good food"], return_tensors="pt")).last_hidden_state[0].mean(0)
    assert np.allclose(r.data[0].embedding, h.numpy(), atol=1e-5)


def test_embeddings_float_and_base64_agree(bert_server):
    url = bert_server.url + "/v1/embeddings"
    _, as_float = http("POST", url, {"model": "enc", "input": "hello"})
    _, as_b64 = http("POST", url, {"model": "enc", "input": "hello", "encoding_format": "base64"})
    decoded = np.frombuffer(base64.b64decode(as_b64["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, as_float["data"][0]["embedding"], atol=1e-6)


def test_encoder_refuses_chat(bert_server):
    status, body = http("POST", bert_server.url + "/v1/chat/completions",
                        {"model": "enc", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and body["error"]["code"] == "not_a_generator"


def test_classify_returns_label_and_probabilities_and_records_drift(classifier_server):
    live, window = classifier_server
    status, body = http("POST", live.url + "/v1/classify", {"model": "clf", "input": ["good", "bad food"]})
    assert status == 200 and len(body["data"]) == 2
    for row in body["data"]:
        probs = row["probabilities"]
        assert set(probs) == {"negative", "positive"} and abs(sum(probs.values()) - 1) < 1e-5
        assert row["label"] == max(probs, key=probs.get)
    lines = window.read_text().splitlines()
    assert len(lines) == 2 and '"label"' in lines[0] and '"embedding"' in lines[0]
