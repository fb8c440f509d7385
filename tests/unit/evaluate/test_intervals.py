"""Intervals for every reported metric, recomputed exactly on each bootstrap resample."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from lmforge.evaluate.intervals import add_generation, metric_samples, paired_tests, resample_weights, system_intervals
from lmforge.evaluate.metrics import classification_metrics
from lmforge.evaluate.uncertainty import _resample_indices, min_p_value, paired_bootstrap

LABELS = ["neg", "neu", "pos"]


def _rows(n: int = 60, seed: int = 0, skill: float = 0.6) -> dict:
    rng = random.Random(seed)
    gold = [rng.randrange(3) for _ in range(n)]
    pred = [g if rng.random() < skill else rng.randrange(3) for g in gold]
    return {"id": [f"{i:016x}" for i in range(n)], "label": gold, "prediction": pred,
            "loss": [rng.uniform(0.1, 2.0) for _ in range(n)], "count": [rng.randint(1, 9) for _ in range(n)]}


def test_every_resample_equals_the_reference_metric_computation():
    """The vectorised recomputation is classification_metrics / the token-weighted loss on each
    resample (to 1e-12: the same arithmetic in float64)."""
    rows = _rows()
    weights = resample_weights(60, rows["id"], 25, seed=3)
    samples = metric_samples(rows, LABELS, weights)
    for r, counts in enumerate(weights):
        sample = np.repeat(np.arange(60), counts)
        ref = classification_metrics([rows["prediction"][i] for i in sample], [rows["label"][i] for i in sample], LABELS)
        for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_micro", "f1_micro"):
            assert samples[name][r] == pytest.approx(ref[name], abs=1e-12), name
        for label in LABELS:
            for key in ("precision", "recall", "f1"):
                assert samples[f"per_class/{label}/{key}"][r] == pytest.approx(ref["per_class"][label][key], abs=1e-12)
        sums = sum(rows["loss"][i] * rows["count"][i] for i in sample)
        loss = sums / sum(rows["count"][i] for i in sample)
        assert samples["eval_loss"][r] == pytest.approx(loss, rel=1e-12)
        assert samples["perplexity"][r] == pytest.approx(math.exp(loss), rel=1e-12)


def test_system_intervals_cover_the_value_and_are_seeded():
    rows = _rows()
    first, again = system_intervals(rows, LABELS, seed=1), system_intervals(rows, LABELS, seed=1)
    assert first == again
    full = classification_metrics(rows["prediction"], rows["label"], LABELS)
    for name in ("f1_macro", "precision_macro", "recall_macro", "accuracy"):
        ci = first[name]
        assert ci["value"] == pytest.approx(full[name]) and ci["low"] < ci["value"] < ci["high"], (name, ci)
    # exp is monotone: the same order statistic, up to the quantiles' linear interpolation between two
    # neighbouring resamples (exp of an interpolated point vs the interpolated exps: ~1e-8 relative here)
    assert first["perplexity"]["low"] == pytest.approx(math.exp(first["eval_loss"]["low"]), rel=1e-6)


def test_paired_tests_see_a_real_improvement_and_not_a_relabelling():
    before, after = _rows(skill=0.2, seed=0), _rows(skill=0.95, seed=0)
    tests = paired_tests(before, after, LABELS)
    f1 = tests["f1_macro"]
    assert f1["difference"] > 0.3 and f1["low"] > 0 and not f1["within_noise"] and f1["p_value"] < 0.01
    same = paired_tests(before, dict(before), LABELS)
    assert same["f1_macro"]["difference"] == 0 and same["f1_macro"]["within_noise"]
    other = dict(after, id=list(reversed(after["id"])))
    assert paired_tests(before, other, LABELS) == {}  # not the same examples: no paired test


def test_generation_metrics_get_intervals_and_rows():
    outputs = ["paris", "a loan", "no idea", "london"] * 5
    references = ["paris", "a loan to a company", "yes", "paris"] * 5
    metrics = add_generation({"per_example": {}}, [{"output": o, "reference": r} for o, r in zip(outputs, references)])
    assert metrics["exact_match"] == pytest.approx(0.25)
    for name in ("exact_match", "token_f1", "rougeL", "bleu"):
        ci = metrics["intervals"][name]
        assert ci["low"] <= metrics[name] <= ci["high"] and ci["n"] == 20
    assert metrics["per_example"]["generation"]["output"] == outputs
    assert np.isclose(np.mean(metrics["per_example"]["generation"]["token_f1"]), metrics["token_f1"])


def test_without_copies_the_resamples_are_the_plain_bootstrap_draws():
    idx = _resample_indices(40, 30, seed=5)
    counts = np.stack([np.bincount(row, minlength=40) for row in idx])
    assert np.array_equal(resample_weights(40, [f"{i:016x}" for i in range(40)], 30, seed=5), counts)
    assert np.array_equal(resample_weights(40, None, 30, seed=5), counts)


def test_exact_copies_are_drawn_together():
    ids = ["a", "b", "a", "c", "b", "a"]  # clusters a (3 copies), b (2), c (1)
    w = resample_weights(6, ids, 200, seed=0)
    assert np.array_equal(w[:, 0], w[:, 2]) and np.array_equal(w[:, 0], w[:, 5]) and np.array_equal(w[:, 1], w[:, 4])
    assert np.array_equal(w[:, 0] + w[:, 1] + w[:, 3], np.full(200, 3))  # 3 distinct examples drawn per resample


def test_copies_of_every_example_change_no_interval_and_no_test():
    """Five copies of each example: every resample draws the same distinct examples as without copies, each
    five times, so every ratio metric is the same (to float rounding: sums of 5x the terms)."""
    before, after = _rows(skill=0.4, seed=2), _rows(skill=0.7, seed=2)

    def copies(rows):
        return {key: [v for v in values for _ in range(5)] for key, values in rows.items()}

    one, five = system_intervals(after, LABELS, seed=4), system_intervals(copies(after), LABELS, seed=4)
    for name in ("eval_loss", "accuracy", "f1_macro", "per_class/pos/recall"):
        assert five[name]["low"] == pytest.approx(one[name]["low"], rel=1e-12), name
        assert five[name]["high"] == pytest.approx(one[name]["high"], rel=1e-12), name
        assert five[name]["n"] == 300 and five[name]["distinct"] == 60 and "distinct" not in one[name]
    t1, t5 = paired_tests(before, after, LABELS, seed=4), paired_tests(copies(before), copies(after), LABELS, seed=4)
    for name in ("eval_loss", "accuracy", "f1_macro"):
        assert t5[name]["p_value"] == pytest.approx(t1[name]["p_value"]) and t5[name]["distinct"] == 60
        assert t5[name]["within_noise"] == t1[name]["within_noise"]


def test_ten_copies_of_one_example_are_not_evidence():
    """The case a user met: a held-out split of ten copies of one chat. The plain bootstrap said the loss drop
    was beyond noise with p<0.001 and a zero-width interval; counted once, nothing can be concluded."""
    before = {"id": ["x"] * 10, "loss": [3.24] * 10, "count": [22] * 10}
    after = {"id": ["x"] * 10, "loss": [2.87] * 10, "count": [22] * 10}
    test = paired_tests(before, after)["eval_loss"]
    assert test["difference"] == pytest.approx(-0.37) and test["p_value"] == 1.0 and test["within_noise"]
    assert test["distinct"] == 1 and system_intervals(after)["eval_loss"]["distinct"] == 1


@pytest.mark.parametrize("distinct, beyond", [(5, False), (6, True)])
def test_few_distinct_examples_are_held_to_the_exact_sign_test_floor(distinct, beyond):
    """Every distinct example improves: the bootstrap p is 0 whatever their number, but an exact paired test
    cannot go below 2 / 2^k (0.0625 with 5, 0.031 with 6)."""
    ids = [f"{i:016x}" for i in range(distinct)]
    before = {"id": ids, "loss": [3.0 + 0.1 * i for i in range(distinct)], "count": [10] * distinct}
    after = {"id": ids, "loss": [2.0 + 0.1 * i for i in range(distinct)], "count": [10] * distinct}
    test = paired_tests(before, after)["eval_loss"]
    assert test["p_value"] == min_p_value(distinct) == 2.0 ** (1 - distinct)
    assert test["within_noise"] is (not beyond)


def test_only_examples_that_moved_count_toward_the_floor():
    """The case a user met: 6 held-out reviews, 3 predictions turned right, 3 unchanged. Every resample's
    accuracy change is >= 0, so the bootstrap p was the floor of six examples (0.031, "beyond noise"); an exact
    sign test over the three that changed cannot go below 0.25. The loss moved on all six: its floor stays."""
    ids = [f"{i:016x}" for i in range(6)]
    gold = [1, 1, 1, 0, 0, 0]
    before = {"id": ids, "label": gold, "prediction": [0, 0, 0, 0, 0, 0], "loss": [0.70, 0.71, 0.72, 0.69, 0.68, 0.70],
              "count": [1] * 6}
    after = {"id": ids, "label": gold, "prediction": [1, 1, 1, 0, 0, 0], "loss": [0.60, 0.61, 0.62, 0.59, 0.58, 0.60],
             "count": [1] * 6}
    tests = paired_tests(before, after, ["neg", "pos"])
    assert tests["accuracy"]["difference"] == pytest.approx(0.5)
    assert tests["accuracy"]["p_value"] >= 0.25 and tests["accuracy"]["within_noise"]
    assert tests["eval_loss"]["p_value"] == min_p_value(6) and not tests["eval_loss"]["within_noise"]
    # the per-example paired bootstrap (compare) counts the examples whose scores differ the same way
    assert paired_bootstrap([0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]).p_value == 0.25
    assert paired_bootstrap([1.0] * 4, [1.0] * 4).p_value == 1.0


def test_the_plain_paired_bootstrap_keeps_the_same_floor():
    result = paired_bootstrap([3.0, 3.1, 3.2], [2.0, 2.1, 2.2])
    assert result.p_value == 0.25 and result.within_noise  # 2 / 2^3: three examples cannot show a change
    assert paired_bootstrap([3.0 + i / 100 for i in range(12)], [2.0] * 12).p_value < 0.001  # 12: the floor is 2^-11


def test_objective_metric_intervals_draw_copies_together():
    """output_intervals (preference accuracy, reward margins: metrics only the objective recomputes): without
    ids the plain bootstrap as before; five copies of every output with their ids give the same interval."""
    from lmforge.evaluate.intervals import output_intervals

    rng = random.Random(3)
    margins = [rng.gauss(0.3, 1.0) for _ in range(30)]

    def recompute(outputs):
        return {"margin": sum(outputs) / len(outputs), "accuracy": sum(m > 0 for m in outputs) / len(outputs)}

    plain = output_intervals(margins, recompute, ["margin", "accuracy"], seed=2)
    old = sorted(recompute([margins[i] for i in row])["margin"] for row in _resample_indices(30, 1000, 2))
    assert plain["margin"]["low"] == pytest.approx(float(np.quantile(old, 0.025)), rel=1e-9)
    copies = [m for m in margins for _ in range(5)]
    ids = [f"{i:016x}" for i in range(30) for _ in range(5)]
    five = output_intervals(copies, recompute, ["margin", "accuracy"], ids=ids, seed=2)
    for name in ("margin", "accuracy"):
        assert five[name]["low"] == pytest.approx(plain[name]["low"], rel=1e-9)
        assert five[name]["high"] == pytest.approx(plain[name]["high"], rel=1e-9)
        assert five[name]["n"] == 150 and five[name]["distinct"] == 30
    row_wise = output_intervals(copies, recompute, ["margin"], seed=2)["margin"]  # copies as evidence: too narrow
    assert row_wise["high"] - row_wise["low"] < 0.6 * (five["margin"]["high"] - five["margin"]["low"])
