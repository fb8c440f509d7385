"""Bootstrap intervals cover the truth at about the stated rate; paired tests detect real differences."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.evaluate.uncertainty import (
    approximate_randomization,
    bootstrap_corpus_interval,
    bootstrap_interval,
    describe_difference,
    paired_bootstrap,
    paired_corpus_test,
)


def test_interval_coverage_on_synthetic_bernoulli():
    true_p = 0.7
    rng = np.random.default_rng(123)
    covered = 0
    reps = 200
    for rep in range(reps):
        sample = rng.binomial(1, true_p, size=100).astype(float)
        ci = bootstrap_interval(sample, confidence=0.95, n_resamples=400, seed=rep)
        assert ci.low <= ci.value <= ci.high
        covered += ci.low <= true_p <= ci.high
    coverage = covered / reps
    assert 0.90 <= coverage <= 0.99, coverage


def test_interval_is_seeded_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = rng.normal(size=30)
    a = bootstrap_interval(small, seed=5)
    b = bootstrap_interval(small, seed=5)
    assert a == b
    big = rng.normal(size=3000)
    assert (bootstrap_interval(big).high - bootstrap_interval(big).low) < (a.high - a.low)


def test_corpus_interval_recomputes_metric_on_resamples():
    values = np.array([0.0, 1.0] * 50)

    def ratio(idx):  # a non-mean corpus metric: fraction of ones, squared
        return float(values[idx].mean() ** 2)

    ci = bootstrap_corpus_interval(ratio, len(values), n_resamples=300)
    assert ci.value == pytest.approx(0.25)
    assert ci.low < 0.25 < ci.high


def test_paired_tests_find_real_difference():
    rng = np.random.default_rng(1)
    a = rng.binomial(1, 0.4, size=200).astype(float)
    b = np.where(rng.random(200) < 0.35, 1.0, a)  # b fixes ~35% of a's examples
    for result in (paired_bootstrap(a, b), approximate_randomization(a, b)):
        assert result.difference > 0
        assert result.p_value < 0.05
        assert not result.within_noise
        assert result.low > 0


def test_identical_systems_are_within_noise():
    rng = np.random.default_rng(2)
    a = rng.random(100)
    for result in (paired_bootstrap(a, a), approximate_randomization(a, a)):
        assert result.difference == 0
        assert result.within_noise
        assert result.p_value == pytest.approx(1.0)
    text = describe_difference("base", "tuned", "token_f1", paired_bootstrap(a, a))
    assert "within noise" in text


def test_noise_only_difference_is_usually_within_noise():
    rng = np.random.default_rng(3)
    a = rng.binomial(1, 0.5, size=50).astype(float)
    b = rng.binomial(1, 0.5, size=50).astype(float)
    assert approximate_randomization(a, b).p_value > 0.01


def test_paired_corpus_test_and_errors():
    a = np.zeros(60)
    b = np.ones(60)
    res = paired_corpus_test(lambda i: float(a[i].mean()), lambda i: float(b[i].mean()), 60, n_resamples=200)
    assert res.difference == pytest.approx(1.0) and not res.within_noise
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        bootstrap_interval([])
