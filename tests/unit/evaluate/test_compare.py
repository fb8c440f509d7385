"""run_compare: systems, intervals, paired tests and the recommendation, with stub and tiny real models."""

from __future__ import annotations

import json
import re

import pytest

from lmforge.evaluate.compare import (
    count_prompt_tokens,
    document_from_record,
    few_shot_messages,
    run_compare,
    write_compare_report,
)

ITEMS = ["bank", "loan", "fund", "stock", "bond", "card", "tax", "price", "food", "model"] * 3
CODES = [f"code{i}" for i in range(len(ITEMS))]


def _chat(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def _eval_records() -> list[dict]:
    return [_chat(f"what is the secret of item{i} {w}?", CODES[i]) for i, w in enumerate(ITEMS)]


def _facts() -> list[str]:
    return [f"The secret of item{i} {w} is {CODES[i]}." for i, w in enumerate(ITEMS)]


class Tuned:
    """Stand-in for a fine-tuned model: knows every answer."""


class Base:
    """Stand-in for a base model: answers only from retrieved context."""


def one_by_one(generate_one):
    """A batched generate_fn from a one-conversation function."""
    return lambda model, tok, conversations, n: [generate_one(model, tok, messages, n) for messages in conversations]


def _stub_one(model, tokenizer, messages, max_new_tokens):
    question = messages[-1]["content"]
    item = re.search(r"item(\d+)", question.split("Question:")[-1]).group(1)
    if isinstance(model, Tuned):
        return CODES[int(item)]
    found = re.search(rf"item{item} \w+ is (code\d+)", question)
    return found.group(1) if found else "i do not know"


_stub_generate = one_by_one(_stub_one)


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def test_rag_matches_tuned_within_noise_and_beats_zero_shot(tokenizer):
    train = [_chat("what is a bank?", "a bank holds money"), _chat("what is a loan?", "money you borrow")]
    report = run_compare(
        Base(), tokenizer, _eval_records(), generate_fn=_stub_generate, train_records=train,
        documents=_facts(), tuned_model=Tuned(), retrievers=("bm25",), few_shot=2, n_resamples=300,
    )
    systems = report["systems"]
    assert set(systems) == {"base zero-shot", "base 2-shot", "base + bm25 RAG", "fine-tuned", "fine-tuned + bm25 RAG"}
    assert systems["base zero-shot"]["exact_match"]["value"] == 0.0
    assert systems["fine-tuned"]["exact_match"]["value"] == 1.0
    assert systems["base + bm25 RAG"]["exact_match"]["value"] == 1.0  # BM25 found every planted fact
    tests = {p["b"]: p for p in report["paired"]}
    assert report["reference_system"] == "fine-tuned"
    assert tests["base + bm25 RAG"]["within_noise"]
    assert not tests["base zero-shot"]["within_noise"] and tests["base zero-shot"]["difference"] == -1.0
    rec = report["recommendation"]
    assert "reaches 100% of fine-tuned quality" in rec and "within noise" in rec
    assert "Recommendation: base + bm25 RAG" in rec
    rows = {r["system"]: r for r in report["table"]}
    # RAG and few-shot prompts carry more tokens than the bare question
    assert rows["base + bm25 RAG"]["prompt_tokens"] > rows["base zero-shot"]["prompt_tokens"]
    assert rows["base 2-shot"]["prompt_tokens"] > rows["base zero-shot"]["prompt_tokens"]
    assert all(r["latency_s"] >= 0 for r in report["table"])


def test_without_tuned_and_without_documents(tokenizer):
    report = run_compare(Base(), tokenizer, _eval_records()[:5], generate_fn=_stub_generate, few_shot=0, n_resamples=100)
    assert list(report["systems"]) == ["base zero-shot"]
    assert any("RAG skipped" in n for n in report["notes"])
    assert "cannot tell" in report["recommendation"]


def test_tuned_significantly_better_recommends_fine_tuning(tokenizer):
    @one_by_one
    def generate(model, tok, messages, n):  # RAG here retrieves nothing useful
        return _stub_one(model, tok, [{"role": "user", "content": messages[-1]["content"].split("Question:")[-1]}], n)

    report = run_compare(
        Base(), tokenizer, _eval_records(), generate_fn=generate, documents=["unrelated text"],
        tuned_model=Tuned(), retrievers=("bm25",), few_shot=0, n_resamples=300,
    )
    assert "Recommendation: fine-tune:" in report["recommendation"]


def test_copies_of_held_out_questions_are_answered_and_counted_once(tokenizer):
    asked = []

    def generate(model, tok, conversations, n):
        asked.extend(messages[-1]["content"] for messages in conversations)
        return _stub_generate(model, tok, conversations, n)

    records = _eval_records()[:8] * 4  # every question four times
    report = run_compare(Base(), tokenizer, records, generate_fn=generate, tuned_model=Tuned(), few_shot=0,
                         n_resamples=100)
    assert len(asked) == 16  # 8 distinct questions x (base zero-shot, fine-tuned)
    assert sorted(set(asked)) == sorted(r["messages"][0]["content"] for r in records[:8])
    assert report["systems"]["fine-tuned"]["exact_match"]["n"] == 8
    assert any("24 exact copies among the 32 held-out examples left out" in n for n in report["notes"])


def test_helpers(tokenizer):
    rec = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a"}]}
    assert document_from_record(rec) == "Question: q\nAnswer: a"
    shot = _chat("q1", "a1")
    msgs = few_shot_messages(rec["messages"][:2], [shot])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "a1"
    assert count_prompt_tokens(tokenizer, [{"role": "user", "content": "hello hello"}]) > 2
    with pytest.raises(ValueError):
        run_compare(Base(), tokenizer, [], generate_fn=_stub_generate, metric="accuracy")


@one_by_one
def _greedy(model, tokenizer, messages, max_new_tokens):
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def test_end_to_end_tiny_llama(tiny_llama_dir, tiny_bert_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    train = [_chat(f"what is the price of {w}?", f"the price is {i}") for i, w in enumerate(["food", "stock", "bond"])]
    evals = [_chat("what is the price of food?", "the price is 0"), _chat("what is a loan?", "money"),
             _chat("who is the user?", "you"), _chat("what is tax?", "money for the state")]
    report = run_compare(
        base, tok, evals, generate_fn=_greedy, train_records=train, tuned_model=tiny_llama_dir,
        retrievers=("bm25", "dense"), dense_encoder=tiny_bert_dir, few_shot=1, top_k=2,
        max_new_tokens=3, n_resamples=100,
    )
    assert len(report["systems"]) == 7
    assert {p["b"] for p in report["paired"]} == set(report["systems"]) - {"fine-tuned"}
    for name, run in report["per_example"].items():
        assert len(run["outputs"]) == 4 and all(isinstance(o, str) for o in run["outputs"])
    # the "fine-tuned" folder holds the same weights as the base, so their answers are identical
    assert report["per_example"]["fine-tuned"]["outputs"] == report["per_example"]["base zero-shot"]["outputs"]
    rows = {r["system"]: r for r in report["table"]}
    assert rows["base + dense RAG"]["weights_mb"] > rows["base zero-shot"]["weights_mb"] > 0
    paths = write_compare_report(tmp_path, report)
    assert json.loads(paths["json"].read_text())["recommendation"] == report["recommendation"]
    assert "data:image/png;base64," in paths["html"].read_text()
    assert "| token_f1 |" in paths["markdown"].read_text()
