"""Uncertainty: bootstrap confidence intervals and paired significance tests.

Every function is seeded and deterministic for a given seed. Intervals use the percentile
bootstrap (Efron & Tibshirani 1993): resample the examples with replacement, recompute the
statistic, take the alpha/2 and 1-alpha/2 quantiles. Paired tests compare two systems scored on
the *same* examples: the paired bootstrap (Koehn 2004) and approximate randomisation (Noreen
1989; Riezler & Maxwell 2005), both resampling whole examples so the pairing is kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

CorpusMetric = Callable[[Sequence[int]], float]
"""A corpus-level metric recomputed on a list of example indices (e.g. corpus BLEU, macro F1)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval."""

    value: float
    low: float
    high: float
    confidence: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedResult:
    """Outcome of comparing system B against system A on the same examples.

    ``difference`` is mean(B) - mean(A) (or metric(B) - metric(A)); ``p_value`` is two-sided;
    ``within_noise`` is True when p_value >= alpha (no detectable difference).
    """

    difference: float
    low: float
    high: float
    p_value: float
    within_noise: bool
    method: str
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n))


def min_p_value(distinct: int) -> float:
    """The smallest two-sided p an exact paired sign-flip test reaches with ``distinct`` examples: 2 / 2^k.

    A paired bootstrap's p is 0 whenever every resample moves the same way, which with a handful of
    examples says nothing (2 / 2^5 = 0.0625: fewer than 6 examples are never significant at 5%); the
    paired tests here never report a p below this floor."""
    return min(1.0, 2.0 ** (1 - distinct)) if distinct > 0 else 1.0


def two_sided_p(resampled: np.ndarray, distinct: int) -> float:
    """The paired tests' p from resampled differences: ``2 min(P(d* <= 0), P(d* >= 0))``, capped at 1, never
    below :func:`min_p_value` of the number of distinct examples."""
    p = 2 * min(float(np.mean(resampled <= 0)), float(np.mean(resampled >= 0)))
    return max(min(1.0, p), min_p_value(distinct))


def _check(n: int, confidence: float) -> None:
    if n == 0:
        raise ValueError("cannot bootstrap an empty set of examples")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_interval(
    values: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0
) -> Interval:
    """Percentile-bootstrap interval of the mean of per-example ``values`` (e.g. token F1 per answer)."""
    arr = np.asarray(values, dtype=float)
    _check(arr.size, confidence)
    means = arr[_resample_indices(arr.size, n_resamples, seed)].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(arr.mean()), float(low), float(high), confidence, int(arr.size))


def bootstrap_corpus_interval(
    metric: CorpusMetric, n: int, *, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0
) -> Interval:
    """Percentile-bootstrap interval of a corpus-level metric over ``n`` examples.

    ``metric(indices)`` must compute the metric on the examples at ``indices`` (repeats allowed);
    it is called once on ``range(n)`` for the point estimate and ``n_resamples`` times more.
    """
    _check(n, confidence)
    value = float(metric(list(range(n))))
    stats = np.array([metric(idx.tolist()) for idx in _resample_indices(n, n_resamples, seed)])
    alpha = 1.0 - confidence
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return Interval(value, float(low), float(high), confidence, n)


def paired_bootstrap(
    values_a: Sequence[float],
    values_b: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> PairedResult:
    """Paired bootstrap of mean(B) - mean(A) over the same examples.

    The interval is the percentile interval of the resampled differences; the two-sided p-value
    is 2 * min(P(diff* <= 0), P(diff* >= 0)), capped at 1, and at least :func:`min_p_value` of the
    number of examples whose scores differ (an unchanged example is no evidence either way). Identical systems
    give p = 1.
    """
    a, b = _paired_arrays(values_a, values_b)
    _check(a.size, confidence)
    diffs = b - a
    resampled = diffs[_resample_indices(a.size, n_resamples, seed)].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(resampled, [alpha / 2, 1 - alpha / 2])
    p = two_sided_p(resampled, int(np.count_nonzero(diffs)))
    return PairedResult(
        float(diffs.mean()), float(low), float(high), float(p), bool(p >= alpha), "paired_bootstrap", a.size
    )


def approximate_randomization(
    values_a: Sequence[float],
    values_b: Sequence[float],
    *,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> PairedResult:
    """Approximate randomisation test of mean(B) - mean(A): swap each pair's outputs at random.

    p = (1 + #{|shuffled diff| >= |observed diff|}) / (1 + n_resamples). The reported interval is
    the observed difference's paired-bootstrap percentile interval at 1 - alpha.
    """
    a, b = _paired_arrays(values_a, values_b)
    _check(a.size, 1.0 - alpha)
    diffs = b - a
    observed = abs(diffs.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, a.size))
    shuffled = np.abs((signs * diffs).mean(axis=1))
    # A small tolerance keeps floating-point ties (e.g. identical systems) counted as ties.
    extreme = int(np.sum(shuffled >= observed - 1e-12))
    p = (1 + extreme) / (1 + n_resamples)
    boot = paired_bootstrap(a, b, confidence=1.0 - alpha, n_resamples=n_resamples, seed=seed)
    return PairedResult(
        float(diffs.mean()), boot.low, boot.high, float(p), bool(p >= alpha), "approximate_randomization", a.size
    )


def paired_corpus_test(
    metric_a: CorpusMetric,
    metric_b: CorpusMetric,
    n: int,
    *,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> PairedResult:
    """Paired bootstrap for a corpus-level metric: both systems are scored on the same resamples."""
    _check(n, confidence)
    full = list(range(n))
    observed = float(metric_b(full) - metric_a(full))
    diffs = np.array([metric_b(i.tolist()) - metric_a(i.tolist()) for i in _resample_indices(n, n_resamples, seed)])
    alpha = 1.0 - confidence
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    p = two_sided_p(diffs, n)
    return PairedResult(observed, float(low), float(high), float(p), bool(p >= alpha), "paired_bootstrap", n)


def _paired_arrays(values_a: Sequence[float], values_b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(values_a, dtype=float)
    b = np.asarray(values_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same examples: {a.size} vs {b.size} scores")
    return a, b


def p_text(p_value: float, resamples: int = 1000) -> str:
    """``p=0.031``, or ``p<0.001`` when no resample reached the observed difference (p is then 0 only
    because the resampling is finite)."""
    return f"p<{1 / resamples:.3g}" if p_value < 1 / resamples else f"p={p_value:.3g}"


def describe_difference(name_a: str, name_b: str, metric: str, result: PairedResult) -> str:
    """One sentence for a report, e.g. 'fine-tuned vs base on token_f1: +0.120 [0.05, 0.19], p=0.002'."""
    verdict = "within noise" if result.within_noise else "significant"
    return (
        f"{name_b} vs {name_a} on {metric}: {result.difference:+.3f} "
        f"[{result.low:+.3f}, {result.high:+.3f}], {p_text(result.p_value)} ({verdict})"
    )
