"""Intervals for every reported metric, recomputed exactly on each bootstrap resample."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from lmforge.evaluate.intervals import add_generation, metric_samples, paired_tests, system_intervals
from lmforge.evaluate.metrics import classification_metrics
from lmforge.evaluate.uncertainty import _resample_indices

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
    idx = _resample_indices(60, 25, seed=3)
    samples = metric_samples(rows, LABELS, idx)
    for r, sample in enumerate(idx):
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
