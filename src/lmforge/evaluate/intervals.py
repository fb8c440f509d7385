"""Confidence intervals for every reported metric, and paired before -> after tests, from per-example rows.

One resampling scheme everywhere: the percentile bootstrap (Efron & Tibshirani 1993) over held-out
examples, ``RESAMPLES`` resamples drawn by :func:`lmforge.evaluate.uncertainty._resample_indices`
from ``seed``, each metric recomputed exactly as reported on each resample (corpus metrics are never
averaged per example: macro-F1 is recomputed from the resample's confusion matrix, eval_loss is
token-weighted, BLEU is corpus BLEU). Paired tests (Koehn 2004) use the *same* resamples for both
systems, so the pairing of examples is kept; the two-sided p-value is
``2 min(P(d* <= 0), P(d* >= 0))`` (0 only because resampling is finite: shown as p<0.001).

Exact copies (examples with the same ``id``: the same tokens) are one resampling unit (a cluster
bootstrap): a resample draws distinct examples and takes every copy of each drawn one, so ten copies of
one question count as one piece of evidence, not ten. With every id distinct this is the plain
bootstrap, draw for draw. And no p-value is reported below ``2 / 2^k`` for the ``k`` distinct examples whose
values behind the metric moved (:func:`_moved_units`), the smallest p an exact paired test (sign flips of
the k differences) can reach: the bootstrap's p is 0
whenever every resample moves the same way, which with 1-5 distinct examples says nothing
(``2 / 2^5 = 0.0625``, so fewer than 6 distinct examples are never "beyond noise" at 95%).

The per-example rows (``evaluate(..., per_example=True)`` stores them in results.json) are:
``id`` (stable example id), ``loss`` / ``count`` (mean loss per unit and units: tokens or 1),
``label`` / ``prediction`` (class ids; label names in the metrics' ``labels``), and
``generation``: ``{"output", "reference", "exact_match", "token_f1", "rouge1", "rouge2", "rougeL"}``
lists for scored generations. Anyone can recompute any interval from results.json.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from lmforge.evaluate.uncertainty import two_sided_p

RESAMPLES = 1000
CONFIDENCE = 0.95
GENERATION_MEANS = ("exact_match", "token_f1", "rouge1", "rouge2", "rougeL")


def metric_samples(per_example: Mapping[str, Any], labels: list[str] | None, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric recomputable from ``per_example`` on each row of ``weights`` (R, n): how many times each
    example is in that resample (all ones: the examples as they are; :func:`resample_weights`).

    Returns {metric: (R,) values}: eval_loss and perplexity (token-weighted; when every example has a
    loss), accuracy, precision / recall / f1 macro and micro and ``per_class/<label>/<precision|recall|f1>``
    (when labels and predictions are there), generation metrics (when ``generation`` is there).
    """
    out: dict[str, np.ndarray] = {}
    w = np.asarray(weights, dtype=float)
    total = np.maximum(w.sum(1), 1.0)
    losses, counts = per_example.get("loss") or [], per_example.get("count") or []
    if losses and all(v is not None for v in losses) and len(losses) == len(counts):
        count = np.asarray(counts, dtype=float)
        sums = np.asarray(losses, dtype=float) * count
        loss = (w * sums).sum(1) / np.maximum((w * count).sum(1), 1.0)
        out["eval_loss"] = loss
        with np.errstate(over="ignore"):
            out["perplexity"] = np.exp(loss)
    gold, pred = per_example.get("label"), per_example.get("prediction")
    if gold and pred and labels:
        out.update(_classification_samples(np.asarray(gold), np.asarray(pred), list(labels), w))
    elif per_example.get("correct"):  # rows written before labels / predictions were kept: accuracy only
        out["accuracy"] = (w * np.asarray(per_example["correct"], dtype=float)).sum(1) / total
    generation = per_example.get("generation") or {}
    for name in GENERATION_MEANS:
        if generation.get(name):
            out[name] = (w * np.asarray(generation[name], dtype=float)).sum(1) / total
    if generation.get("output") and generation.get("reference"):
        out["bleu"] = _bleu_samples(generation["output"], generation["reference"], w)
    return out


def resample_weights(n: int, ids: list | None, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) integer counts: bootstrap resamples of ``n`` examples, exact copies (equal ``ids``)
    drawn together as one unit (see the module doc). Without copies: the draws of
    :func:`lmforge.evaluate.uncertainty._resample_indices` for ``n`` examples, as counts."""
    clusters, k = _clusters(n, ids)
    draws = np.random.default_rng(seed).integers(0, k, size=(resamples, k))
    flat = (np.arange(resamples)[:, None] * k + draws).ravel()
    per_cluster = np.bincount(flat, minlength=resamples * k).reshape(resamples, k)
    return per_cluster[:, clusters]


def distinct_examples(n: int, ids: list | None) -> int:
    """How many resampling units ``n`` examples with ``ids`` are (distinct ids; ``n`` without ids)."""
    return _clusters(n, ids)[1]


def _clusters(n: int, ids: list | None) -> tuple[np.ndarray, int]:
    """(cluster of each example, number of clusters), clusters numbered by first appearance."""
    if not ids or len(ids) != n:
        return np.arange(n), n
    first: dict[Any, int] = {}
    clusters = np.array([first.setdefault(i, len(first)) for i in ids], dtype=np.int64)
    return clusters, len(first)


def _classification_samples(gold: np.ndarray, pred: np.ndarray, labels: list[str], w: np.ndarray) -> dict:
    """The metrics of :func:`lmforge.evaluate.metrics.classification_metrics`, vectorised over resamples
    (``w``: (R, n) counts of each example in each resample)."""
    k, rows = len(labels), w.shape[0]
    flat = (np.arange(rows)[:, None] * k * k + (gold * k + pred)[None, :]).ravel()
    conf = np.bincount(flat, weights=w.ravel(), minlength=rows * k * k).reshape(rows, k, k)
    tp = np.diagonal(conf, axis1=1, axis2=2)
    predicted, support = conf.sum(1), conf.sum(2)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    present = ((support > 0) | (predicted > 0)).astype(float)
    n_present = np.maximum(present.sum(1), 1.0)
    total_tp, total_pred, total_gold = tp.sum(1), predicted.sum(1), support.sum(1)
    micro_p = np.divide(total_tp, total_pred, out=np.zeros_like(total_tp), where=total_pred > 0)
    micro_r = np.divide(total_tp, total_gold, out=np.zeros_like(total_tp), where=total_gold > 0)
    out = {
        "accuracy": total_tp / np.maximum(w.sum(1), 1.0),
        "precision_macro": (precision * present).sum(1) / n_present,
        "recall_macro": (recall * present).sum(1) / n_present,
        "f1_macro": (f1 * present).sum(1) / n_present,
        "precision_micro": micro_p, "recall_micro": micro_r,
        "f1_micro": np.divide(2 * micro_p * micro_r, micro_p + micro_r, out=np.zeros_like(micro_p),
                              where=micro_p + micro_r > 0),
    }
    for c, name in enumerate(labels):
        out[f"per_class/{name}/precision"] = precision[:, c]
        out[f"per_class/{name}/recall"] = recall[:, c]
        out[f"per_class/{name}/f1"] = f1[:, c]
    return out


def _bleu_samples(outputs: list[str], references: list[str], w: np.ndarray) -> np.ndarray:
    from lmforge.evaluate.textmetrics import corpus_bleu

    rows = [np.repeat(np.arange(w.shape[1]), w_row.astype(np.int64)) for w_row in w]
    return np.array([corpus_bleu([outputs[i] for i in row], [references[i] for i in row]) for row in rows])


def system_intervals(per_example: Mapping[str, Any], labels: list[str] | None = None, *, seed: int = 0,
                     resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> dict[str, dict]:
    """{metric: {"value", "low", "high", "confidence", "n", "method": "bootstrap"}} for every metric
    :func:`metric_samples` can recompute (value = the metric on all examples). Generation metrics are
    resampled over the scored generations (often fewer than the held-out examples)."""
    out: dict[str, dict] = {}
    for rows, n in _groups(per_example):
        ids = rows.get("id")
        point = metric_samples(rows, labels, np.ones((1, n)))
        samples = metric_samples(rows, labels, resample_weights(n, ids, resamples, seed))
        k = distinct_examples(n, ids)
        out.update({name: _interval(float(point[name][0]), values, confidence, n, k) for name, values in samples.items()})
    return out


def paired_tests(before: Mapping[str, Any], after: Mapping[str, Any], labels: list[str] | None = None, *,
                 seed: int = 0, resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> dict[str, dict]:
    """Paired bootstrap of after - before for every metric both sides can recompute on the same examples.

    ``before`` / ``after``: per-example rows over the same held-out examples (same count and, when both
    carry them, the same ids; generations: the same number of scored prompts). Each value: ``{"metric",
    "difference", "low", "high", "p_value", "within_noise", "method": "paired_bootstrap", "n"}``.
    """
    if before and after and before.get("id") and after.get("id") and list(before["id"]) != list(after["id"]):
        return {}
    groups_a, groups_b = dict((_kind(r), (r, n)) for r, n in _groups(before)), dict((_kind(r), (r, n)) for r, n in _groups(after))
    alpha = 1.0 - confidence
    tests = {}
    for kind in groups_a.keys() & groups_b.keys():
        (rows_a, n), (rows_b, n_b) = groups_a[kind], groups_b[kind]
        if n != n_b:
            continue
        ids = rows_a.get("id")
        k = distinct_examples(n, ids)
        weights = np.vstack([np.ones((1, n), dtype=np.int64), resample_weights(n, ids, resamples, seed)])
        a, b = metric_samples(rows_a, labels, weights), metric_samples(rows_b, labels, weights)
        for name in sorted(a.keys() & b.keys()):
            diffs = b[name] - a[name]
            observed, boot = float(diffs[0]), diffs[1:]
            if not (math.isfinite(observed) and np.isfinite(boot).all()):
                continue
            low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
            p = two_sided_p(boot, _moved_units(name, rows_a, rows_b, n, ids, k))
            tests[name] = {"metric": name, "difference": observed, "low": float(low), "high": float(high),
                           "p_value": p, "within_noise": bool(p >= alpha), "method": "paired_bootstrap", "n": n,
                           **({"distinct": k} if k < n else {})}
    return tests


def _moved_units(name: str, rows_a: Mapping[str, Any], rows_b: Mapping[str, Any], n: int, ids: list | None,
                 k: int) -> int:
    """The distinct examples whose values behind metric ``name`` differ between the two systems (predictions
    for classification metrics, losses for eval_loss / perplexity, outputs or scores for generation metrics):
    an example that did not move is no evidence either way, so the p floor counts only those that did (three
    of six answers turning right is p >= 0.25, as an exact sign test says, not the 2 / 2^6 of six examples).
    ``k`` (every distinct example) when the values are not there to compare."""
    if "generation" in rows_a:
        key = name if name in GENERATION_MEANS else "output"
        a, b = (rows_a["generation"].get(key), rows_b["generation"].get(key))
    else:
        key = "loss" if name in ("eval_loss", "perplexity") else "prediction" if rows_a.get("prediction") else "correct"
        a, b = rows_a.get(key), rows_b.get(key)
    if not a or not b or len(a) != n or len(b) != n:
        return k
    moved = [i for i in range(n) if a[i] != b[i]]
    return distinct_examples(len(moved), [ids[i] for i in moved] if ids and len(ids) == n else None)


def add_generation(metrics: dict, rows: list[Mapping[str, Any]], *, seed: int = 0) -> dict:
    """Score generations ``rows`` (``sample_generations`` output: "output", "reference") into ``metrics``:
    the generation metrics' values, their intervals (``metrics["intervals"]``) and the per-example
    scores and texts (``metrics["per_example"]["generation"]``, when per-example rows are kept)."""
    from lmforge.evaluate.textmetrics import corpus_bleu, per_example_scores

    outputs, references = [str(r["output"]) for r in rows], [str(r["reference"]) for r in rows]
    generation = {"output": outputs, "reference": references, **per_example_scores(outputs, references)}
    metrics.update({name: float(np.mean(values)) if values else 0.0
                    for name, values in generation.items() if name in GENERATION_MEANS})
    metrics["bleu"] = corpus_bleu(outputs, references)
    if "per_example" in metrics and outputs:
        metrics["per_example"]["generation"] = generation
        metrics.setdefault("intervals", {}).update(system_intervals({"generation": generation}, seed=seed))
    return metrics


def _groups(per_example: Mapping[str, Any] | None) -> list[tuple[dict, int]]:
    """(rows, n) per resampling unit: the held-out examples, and the scored generations."""
    if not per_example:
        return []
    main = {k: v for k, v in per_example.items() if k != "generation"}
    out = []
    n = next((len(main[k]) for k in ("count", "label", "correct", "id") if main.get(k)), 0)
    if n:
        out.append((main, n))
    generation = per_example.get("generation") or {}
    n_gen = len(generation.get("token_f1") or generation.get("output") or [])
    if n_gen:
        out.append(({"generation": generation}, n_gen))
    return out


def _kind(rows: Mapping[str, Any]) -> str:
    return "generation" if "generation" in rows else "examples"


def output_intervals(outputs: list, recompute: Callable[[list], Mapping[str, Any]], names: list[str], *,
                     ids: list | None = None, seed: int = 0, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE) -> dict[str, dict]:
    """Bootstrap intervals of metrics only an objective can compute (e.g. preference reward margins):
    ``recompute(resampled per-example outputs) -> metrics`` on each resample of ``outputs``; with ``ids``
    (one per output), exact copies are drawn together as in :func:`resample_weights`."""
    n = len(outputs)
    if n == 0 or not names:
        return {}
    point = recompute(outputs)
    everyone = np.arange(n)
    rows = [recompute([outputs[i] for i in np.repeat(everyone, counts)])
            for counts in resample_weights(n, ids, resamples, seed)]
    k = distinct_examples(n, ids)
    return {name: _interval(float(point[name]), np.array([float(r.get(name, math.nan)) for r in rows]), confidence,
                            n, k)
            for name in names if _finite_number(point.get(name))}


def _interval(value: float, samples: np.ndarray, confidence: float, n: int, distinct: int | None = None) -> dict:
    finite = samples[np.isfinite(samples)]
    alpha = 1.0 - confidence
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2]) if finite.size else (math.nan, math.nan)
    return {"value": value, "low": float(low), "high": float(high), "confidence": confidence, "n": n,
            "method": "bootstrap", **({"distinct": distinct} if distinct is not None and distinct < n else {})}


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
