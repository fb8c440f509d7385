"""Generation metrics against hand-computed values."""

from __future__ import annotations

import pytest

from lmforge.evaluate import textmetrics as tm


def test_normalize_answer_squad_style():
    assert tm.normalize_answer("  The Capital, of France!  ") == "capital of france"
    assert tm.normalize_answer("An apple a day") == "apple day"
    # articles only as whole words: "theory" keeps its "the"
    assert tm.normalize_answer("Theory") == "theory"


def test_exact_match_ignores_case_punctuation_articles():
    assert tm.exact_match("Paris.", "paris") == 1.0
    assert tm.exact_match("the Paris", "Paris") == 1.0
    assert tm.exact_match("Paris, France", "Paris") == 0.0


def test_token_f1_hand_computed():
    # pred tokens: [paris, is, capital]; ref: [capital, is, paris, france]
    # overlap 3 -> P = 3/3, R = 3/4, F1 = 2*1*0.75/1.75
    assert tm.token_f1("Paris is the capital", "The capital is Paris, France") == pytest.approx(1.5 / 1.75)
    assert tm.token_f1("london", "paris") == 0.0
    assert tm.token_f1("", "") == 1.0
    assert tm.token_f1("", "paris") == 0.0
    # repeated tokens count at most as often as in the reference
    assert tm.token_f1("paris paris", "paris") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_rouge_hand_computed():
    # pred: the cat is on the mat (6), ref: the cat sat on the mat (6)
    # unigram overlap 5 -> 5/6; bigrams: pred {the cat, cat is, is on, on the, the mat},
    # ref {the cat, cat sat, sat on, on the, the mat}: 3 of 5 -> 0.6; LCS = 5 -> 5/6
    scores = tm.rouge("the cat is on the mat", "the cat sat on the mat")
    assert scores["rouge1"] == pytest.approx(5 / 6)
    assert scores["rouge2"] == pytest.approx(0.6)
    assert scores["rougeL"] == pytest.approx(5 / 6)
    # LCS differs from unigram overlap when order differs: "b a" vs "a b" -> LCS 1 of 2
    assert tm.rouge_l("b a", "a b") == pytest.approx(0.5)
    assert tm.rouge("b a", "a b")["rouge1"] == pytest.approx(1.0)


def test_bleu_perfect_and_zero():
    assert tm.corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert tm.corpus_bleu(["dog"], ["the cat sat on the mat"]) == pytest.approx(0.0)
    assert 0.0 < tm.sentence_bleu("the cat sat on a mat", "the cat sat on the mat") < 100.0


def test_generation_metrics_aggregates_means():
    preds = ["Paris", "london"]
    refs = ["paris", "Berlin"]
    scores = tm.generation_metrics(preds, refs)
    assert scores["exact_match"] == pytest.approx(0.5)
    assert scores["token_f1"] == pytest.approx(0.5)
    assert scores["rougeL"] == pytest.approx(0.5)
    assert set(scores) == {"exact_match", "token_f1", "rouge1", "rouge2", "rougeL", "bleu"}
    per = tm.per_example_scores(preds, refs)
    assert per["exact_match"] == [1.0, 0.0]


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        tm.generation_metrics(["a"], ["a", "b"])


def test_generation_intervals_bracket_the_corpus_value():
    preds = ["the cat sat on the mat", "a dog ran", "paris", "london is big"] * 5
    refs = ["the cat sat on the mat", "the dog ran fast", "paris", "berlin is big"] * 5
    out = tm.generation_intervals(preds, refs, n_resamples=100)
    plain = tm.generation_metrics(preds, refs)
    for name, value in plain.items():
        assert out[name]["value"] == pytest.approx(value)
        assert out[name]["low"] <= value <= out[name]["high"]
    assert out["exact_match"]["low"] < out["exact_match"]["high"]
