"""Classification and language-model metrics against hand-computed values (and scikit-learn)."""

from __future__ import annotations

import json
import math
import random

import pytest

from lmforge.evaluate.metrics import classification_metrics, lm_metrics, perplexity

LABELS = ["neg", "neu", "pos"]
# gold:  neg neg neg neu neu pos pos pos pos
# pred:  neg neg pos neu neg pos pos neu pos
GOLD = [0, 0, 0, 1, 1, 2, 2, 2, 2]
PRED = [0, 0, 2, 1, 0, 2, 2, 1, 2]


def test_hand_computed_three_classes():
    m = classification_metrics(PRED, GOLD, LABELS)
    assert m["confusion_matrix"] == [[2, 0, 1], [1, 1, 0], [0, 1, 3]]
    assert m["accuracy"] == pytest.approx(6 / 9)
    # neg: tp 2, predicted 3, support 3; neu: tp 1, predicted 2, support 2; pos: tp 3, predicted 4, support 4
    p = [2 / 3, 1 / 2, 3 / 4]
    r = [2 / 3, 1 / 2, 3 / 4]
    f = [2 * a * b / (a + b) for a, b in zip(p, r)]
    assert m["per_class"]["neg"] == pytest.approx({"precision": p[0], "recall": r[0], "f1": f[0], "support": 3})
    assert m["per_class"]["pos"]["support"] == 4
    assert m["precision_macro"] == pytest.approx(sum(p) / 3)
    assert m["recall_macro"] == pytest.approx(sum(r) / 3)
    assert m["f1_macro"] == pytest.approx(sum(f) / 3)
    assert m["precision_micro"] == m["recall_micro"] == m["f1_micro"] == pytest.approx(6 / 9)
    assert m["labels"] == LABELS
    json.dumps(m)


def test_unbalanced_precision_and_recall_differ():
    m = classification_metrics([1, 1, 1, 1], [0, 1, 1, 1], ["a", "b"])
    assert m["per_class"]["b"]["precision"] == pytest.approx(3 / 4)
    assert m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["a"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["f1_macro"] == pytest.approx((0 + 2 * 0.75 / 1.75) / 2)


def test_label_names_equal_class_ids():
    by_name = classification_metrics([LABELS[i] for i in PRED], [LABELS[i] for i in GOLD], LABELS)
    assert by_name == classification_metrics(PRED, GOLD, LABELS)


def test_class_absent_from_both_sides_is_listed_but_not_averaged():
    m = classification_metrics([0, 1, 1], [0, 1, 0], ["a", "b", "c"])
    assert m["per_class"]["c"]["support"] == 0
    assert m["f1_macro"] == pytest.approx((m["per_class"]["a"]["f1"] + m["per_class"]["b"]["f1"]) / 2)
    assert m["confusion_matrix"][2] == [0, 0, 0]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="references"):
        classification_metrics([0], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([5], [0], ["a", "b"])
    with pytest.raises(ValueError, match="not in the label set"):
        classification_metrics(["zzz"], ["a"], ["a", "b"])


def test_matches_scikit_learn_on_random_labels():
    sk = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    for trial in range(20):
        k = rng.randint(2, 5)
        gold = [rng.randrange(k) for _ in range(rng.randint(1, 40))]
        pred = [g if rng.random() < 0.5 else rng.randrange(k) for g in gold]
        m = classification_metrics(pred, gold, [str(i) for i in range(k)])
        assert m["accuracy"] == pytest.approx(sk.accuracy_score(gold, pred))
        for avg in ("macro", "micro"):
            p, r, f, _ = sk.precision_recall_fscore_support(gold, pred, average=avg, zero_division=0)
            assert (m[f"precision_{avg}"], m[f"recall_{avg}"], m[f"f1_{avg}"]) == pytest.approx((p, r, f)), (trial, avg)
        assert m["confusion_matrix"] == sk.confusion_matrix(gold, pred, labels=list(range(k))).tolist()


def test_lm_metrics_of_a_known_loss():
    m = lm_metrics(6.0, 3)
    assert m["eval_loss"] == pytest.approx(2.0)
    assert m["perplexity"] == pytest.approx(math.e**2)
    assert lm_metrics(0.0, 10)["perplexity"] == 1.0


def test_perplexity_overflow_is_inf_and_zero_count_raises():
    assert perplexity(800.0) == math.inf
    assert lm_metrics(1e6, 1)["perplexity"] == math.inf
    with pytest.raises(ValueError, match="count"):
        lm_metrics(1.0, 0)
