"""BM25 and dense retrieval find a planted document among distractors."""

from __future__ import annotations

import math

import pytest

from lmforge.evaluate.retrieval import (
    BM25Retriever,
    DenseRetriever,
    build_prompt_with_context,
    encoder_path,
    messages_with_context,
)

DISTRACTORS = [
    "The stock market fell sharply on Monday after the rate decision.",
    "A good review of the new phone praised its battery life.",
    "Cats sleep for most of the day and hunt at night.",
    "The recipe calls for two eggs, flour and a pinch of salt.",
    "Football season starts in August for most European leagues.",
    "Bond funds pay interest twice a year to their holders.",
    "The museum opens at nine and closes at five on weekdays.",
    "Rainfall in the region doubled compared to last spring.",
]
PLANTED = "The Zorblax credit card charges a late fee of 39 dollars after the due date."


def _corpus(position: int = 5) -> list[str]:
    docs = list(DISTRACTORS)
    docs.insert(position, PLANTED)
    return docs


def test_bm25_finds_planted_document():
    docs = _corpus(5)
    hits = BM25Retriever(docs).search("What late fee does the Zorblax card charge?", k=3)
    assert hits[0][0] == 5
    assert hits[0][1] > hits[1][1]


def test_bm25_score_hand_computed():
    # two docs; query "cat": df=1, N=2 -> idf = ln(1 + 1.5/1.5) = ln 2; doc0 len 2, avg 1.5
    r = BM25Retriever(["cat dog", "dog"], k1=1.5, b=0.75)
    norm = 1.5 * (1 - 0.75 + 0.75 * 2 / 1.5)
    assert r.score("cat") == pytest.approx([math.log(2) * 2.5 / (1 + norm), 0.0])
    assert r.search("nothing here", k=1) == [(0, 0.0)]


def test_prompt_with_context():
    prompt = build_prompt_with_context("What fee?", ["fee is 39", "other"])
    assert prompt.index("[1] fee is 39") < prompt.index("[2] other") < prompt.index("Question: What fee?")
    assert build_prompt_with_context("q", []) == "q"
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "What fee?"}]
    out = messages_with_context(msgs, ["fee is 39"])
    assert out[0] == msgs[0] and "fee is 39" in out[1]["content"]
    assert msgs[1]["content"] == "What fee?"  # input untouched


def test_dense_retriever_with_tiny_bert_ranks_exact_duplicate_first(tiny_bert_dir):
    # random tiny encoder: only an identical text is guaranteed to be the nearest neighbour
    docs = ["good food taste", "bank loan interest rate", "the capital of france is paris"]
    r = DenseRetriever.from_pretrained(docs, tiny_bert_dir)
    hits = r.search("bank loan interest rate", k=3)
    assert hits[0][0] == 1
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [i for i, _ in hits] != [] and len(hits) == 3
    assert r.embed(["a", "b"]).shape[0] == 2


@pytest.mark.slow
def test_dense_minilm_finds_planted_document_by_meaning():
    docs = _corpus(2)
    r = DenseRetriever.from_pretrained(docs, "minilm-l6")
    assert encoder_path("minilm-l6").is_dir()
    # paraphrase with little word overlap: "penalty", "paying late", "Zorblax"
    hits = r.search("What is the penalty on my Zorblax card for paying late?", k=3)
    assert hits[0][0] == 2


def test_documents_are_cut_into_passages_at_paragraphs_and_sentences():
    from lmforge.evaluate.retrieval import passages

    doc = "a b c.\n\nd e f. g h i.\n\n" + " ".join(["w"] * 10) + ". x y."
    assert passages([doc], max_words=4) == ["a b c.", "d e f.", "g h i.", "w w w w", "w w w w", "w w. x y."]
    assert passages(["one two\n\nthree"], max_words=4) == ["one two\n\nthree"]  # short paragraphs share a passage
    assert passages(["", " \n\n "], max_words=4) == []
    long = passages(["Coupons pay. " * 150])  # 300 words
    assert [len(p.split()) for p in long] == [120, 120, 60]
