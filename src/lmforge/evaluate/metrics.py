"""Metrics from evaluation outputs: classification scores and language-model loss / perplexity.

Pure Python (no torch, no sklearn), so they are cheap to test against hand-computed values.
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def classification_metrics(predictions: Sequence[Any], references: Sequence[Any], labels: Sequence[str]) -> dict:
    """Accuracy, macro / micro precision-recall-F1, per-class scores and the confusion matrix.

    predictions, references: class ids (int, index into ``labels``) or label names, same length.
    labels: the label set; index = class id.

    Returns a JSON-serialisable dict::

        accuracy, precision_macro, recall_macro, f1_macro, precision_micro, recall_micro, f1_micro
        per_class: {label: {precision, recall, f1, support}}
        confusion_matrix: list of rows, rows = gold class, columns = predicted class (labels order)
        labels: the label names

    Macro averages run over the classes that occur in ``references`` or ``predictions`` (as
    scikit-learn does when no label list is given): a class absent from a small held-out set
    carries no information and would only pull the average towards 0. A score whose
    denominator is 0 is 0 (scikit-learn's ``zero_division=0``).
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not references:
        raise ValueError("classification_metrics needs at least one example")
    labels = [str(name) for name in labels]
    pred = [_class_id(p, labels) for p in predictions]
    gold = [_class_id(r, labels) for r in references]
    k = len(labels)
    matrix = [[0] * k for _ in range(k)]
    for g, p in zip(gold, pred):
        matrix[g][p] += 1
    tp = [matrix[i][i] for i in range(k)]
    predicted = [sum(matrix[r][i] for r in range(k)) for i in range(k)]
    support = [sum(matrix[i]) for i in range(k)]
    per_class = {}
    for i, name in enumerate(labels):
        precision, recall = _ratio(tp[i], predicted[i]), _ratio(tp[i], support[i])
        per_class[name] = {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "support": support[i]}
    present = [i for i in range(k) if support[i] or predicted[i]]
    micro_p = _ratio(sum(tp), sum(predicted))
    micro_r = _ratio(sum(tp), sum(support))
    return {
        "accuracy": sum(tp) / len(gold),
        "precision_macro": _mean(per_class[labels[i]]["precision"] for i in present),
        "recall_macro": _mean(per_class[labels[i]]["recall"] for i in present),
        "f1_macro": _mean(per_class[labels[i]]["f1"] for i in present),
        "precision_micro": micro_p,
        "recall_micro": micro_r,
        "f1_micro": _f1(micro_p, micro_r),
        "per_class": per_class,
        "confusion_matrix": matrix,
        "labels": labels,
    }


def lm_metrics(loss_total: float, count: int) -> dict:
    """Language-model metrics from a summed loss (nats) over ``count`` units (label tokens).

    Returns ``{"eval_loss": loss_total / count, "perplexity": exp(eval_loss)}``; perplexity is
    ``inf`` when the exponential overflows a float.
    """
    if count <= 0:
        raise ValueError("lm_metrics needs count > 0 (no trained tokens were evaluated)")
    loss = float(loss_total) / count
    return {"eval_loss": loss, "perplexity": perplexity(loss)}


def perplexity(mean_loss: float) -> float:
    """exp(mean_loss), or ``inf`` past what a float holds (~709 nats)."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf


def _class_id(value: Any, labels: list[str]) -> int:
    if isinstance(value, str):
        if value not in labels:
            raise ValueError(f"label {value!r} is not in the label set {labels}")
        return labels.index(value)
    index = int(value)
    if not 0 <= index < len(labels):
        raise ValueError(f"class id {index} is outside the {len(labels)} labels")
    return index


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
