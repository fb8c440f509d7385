"""Forgetting check: general sets load from the offline assets, are scored, and compared before -> after."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lmforge.errors import UserError
from lmforge.evaluate.forgetting import compare_forgetting, load_forgetting_set, measure_forgetting


def test_assets_load_as_text_or_qa():
    wiki = load_forgetting_set("asset:wiki", limit=5)
    assert len(wiki) == 5 and all(set(r) == {"text"} and len(r["text"].split()) >= 3 for r in wiki)
    nq = load_forgetting_set("asset:nq-open", limit=4)
    assert len(nq) == 4 and nq[0]["answers"] == ["Meghan Trainor"]
    boolq = load_forgetting_set("asset:boolq", limit=6)
    assert len(boolq) == 6 and all(r["answers"] in (["yes"], ["no"]) for r in boolq)
    assert "Question:" in boolq[0]["question"]  # the passage is given with the question


def test_jsonl_file_rows_are_filtered(tmp_path):
    path = tmp_path / "general.jsonl"
    rows = [{"question": "who?", "answer": "me"}, {"question": "no answer"}, {"question": "what?", "answers": ["x", "y"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_forgetting_set(str(path)) == [{"question": "who?", "answers": ["me"]},
                                              {"question": "what?", "answers": ["x", "y"]}]
    with pytest.raises(UserError, match="not found"):
        load_forgetting_set(str(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"other": 1}) + "\n")
    with pytest.raises(UserError, match="no usable row"):
        load_forgetting_set(str(empty))


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval(), AutoTokenizer.from_pretrained(tiny_llama_dir)


TEXTS = [{"text": "the bank has a good interest rate"}, {"text": "what is the capital of france"},
         {"text": "i love this product and the price is good for you"}]


def test_text_loss_matches_the_model_loss_and_ignores_batching(llama):
    model, tok = llama
    result = measure_forgetting(model, tok, TEXTS, batch_size=2)
    ids = torch.tensor([tok(TEXTS[2]["text"])["input_ids"]])
    with torch.no_grad():
        expected = model(input_ids=ids, labels=ids).loss.item()
    assert result["kind"] == "text" and result["examples"] == 3
    assert result["per_example"]["loss"][2] == pytest.approx(expected, rel=1e-4)
    assert result["general_perplexity"] == pytest.approx(math.exp(result["general_loss"]))
    one = measure_forgetting(model, tok, TEXTS, batch_size=1)
    assert one["per_example"]["loss"] == pytest.approx(result["per_example"]["loss"], rel=1e-4)
    assert one["general_loss"] == pytest.approx(result["general_loss"], rel=1e-4)


def test_qa_scores_generated_answers(llama):
    model, tok = llama
    records = [{"question": "what is the capital of france?", "answers": ["paris"]},
               {"question": "is it good?", "answers": ["yes", "no"]}]
    result = measure_forgetting(model, tok, records, max_new_tokens=4)
    assert result["kind"] == "qa" and result["examples"] == 2
    assert all(0.0 <= v <= 1.0 for v in result["per_example"]["token_f1"])
    assert result["general_token_f1"] == pytest.approx(sum(result["per_example"]["token_f1"]) / 2)
    assert result["samples"][0]["reference"] == "paris" and isinstance(result["samples"][0]["output"], str)


def _text(losses):
    return {"kind": "text", "per_example": {"loss": losses}}


def test_compare_flags_lost_gained_and_noise():
    base = [2.0 + 0.1 * (i % 5) for i in range(40)]
    lost = compare_forgetting(_text(base), _text([v + 1.0 for v in base]), source="asset:wiki")
    assert lost["verdict"] == "lost" and lost["difference"] == pytest.approx(1.0) and not lost["within_noise"]
    assert "asset:wiki" in lost["sentence"] and "lost general ability" in lost["sentence"]
    same = compare_forgetting(_text(base), _text(list(base)))
    assert same["verdict"] == "within noise" and same["p_value"] == 1.0
    qa_before = {"kind": "qa", "per_example": {"token_f1": [0.0] * 30}}
    qa_after = {"kind": "qa", "per_example": {"token_f1": [1.0] * 20 + [0.0] * 10}}
    gained = compare_forgetting(qa_before, qa_after)
    assert gained["metric"] == "token_f1" and gained["verdict"] == "gained"
    assert gained["after"]["low"] <= gained["after"]["value"] <= gained["after"]["high"]
    with pytest.raises(ValueError, match="different sets"):
        compare_forgetting(_text(base), _text(base[:10]))
