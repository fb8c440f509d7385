"""Run an objective's evaluation over held-out features and turn the outputs into metrics."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn

from lmforge import progress
from lmforge.errors import UserError
from lmforge.evaluate.metrics import classification_metrics, lm_metrics
from lmforge.objectives.base import EvalOutput


def evaluate(objective: Any, model: nn.Module, features: list[dict], collate: Callable[[list[dict]], dict],
             batch_size: int, *, per_example: bool = False) -> dict:
    """Evaluate ``model`` on ``features`` with ``objective.eval_step``; return JSON-serialisable metrics.

    features: encoded examples (``objective.encode`` output), cut into batches of ``batch_size``
    in order, each turned into tensors by ``collate`` and moved to the model's device.
    The model runs in eval mode without gradients; its previous train/eval mode is restored.

    Returns ``eval_loss`` (sum of loss_total / sum of count over all batches, i.e. token- or
    example-weighted), ``perplexity`` when ``objective.spec.metrics`` lists it, the
    classification metrics of :func:`classification_metrics` when the objective yields
    predictions (label names from ``model.config.id2label``), and ``eval_examples``.

    With ``per_example`` the result gains per-example values, taken from batched forwards when the
    objective splits each batch into ``EvalOutput.rows`` (causal LM, classification), else from
    evaluating every feature on its own (a batch of one): ``"per_example"`` holds the rows of
    :func:`per_example_values` in feature order (ids, losses, counts, labels / predictions, scores):
    what bootstrap intervals and paired before -> after tests resample; and ``"intervals"`` holds a
    95% bootstrap interval for every reported metric (:func:`metric_intervals`). An example with no
    scored unit gets loss ``None``. The aggregate metrics are the same as without it.
    """
    if not features:
        raise UserError("there are no held-out examples to evaluate", where="data.test",
                        hint="give data.test a file, raise data.split.test, or raise eval.max_examples")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outputs, sizes = _run(objective, model, features, collate, batch_size)
    if per_example and any(len(o.rows) != n for o, n in zip(outputs, sizes)):
        outputs, sizes = _run(objective, model, features, collate, 1)  # no per-row split: one by one
    metrics = summarize(outputs, objective, model, len(features))
    if per_example:
        metrics["per_example"] = per_example_values(outputs, features)
        metrics["intervals"] = metric_intervals(metrics, outputs, objective)
    return metrics


def _run(objective: Any, model: nn.Module, features: list[dict], collate: Callable[[list[dict]], dict],
         step: int) -> tuple[list[EvalOutput], list[int]]:
    """``objective.eval_step`` over consecutive batches of ``step`` features; outputs and batch sizes."""
    outputs, sizes = [], []
    device = model_device(model)
    with eval_mode(model), torch.no_grad(), progress.bar(len(features), "examples", "evaluation") as tick:
        for start in range(0, len(features), step):
            chunk = features[start:start + step]
            outputs.append(objective.eval_step(model, _to_device(collate(chunk), device)))
            sizes.append(len(chunk))
            tick(len(chunk))
    return outputs, sizes


def per_example_values(outputs: list[EvalOutput], features: list[dict] | None = None) -> dict[str, list]:
    """Per-example rows in feature order (see :func:`evaluate`), from each output's ``rows`` or, for
    one-example outputs without rows, from the output itself:

    ``id`` (a stable id of the example's tokens, hex; with ``features``), ``loss`` (mean per unit;
    None for an example with no scored unit), ``count`` (units), and when the objective predicts:
    ``label`` / ``prediction`` (class ids) and ``correct`` (1.0 / 0.0); ``score`` when the objective
    yields one score row per example (class probabilities, preference rewards)."""
    rows = [r for o in outputs for r in (o.rows or [(o.loss_total, o.count)])]
    values: dict[str, list] = {}
    if features is not None and len(features) == len(rows) and all(
            isinstance(f, dict) and ("uid" in f or "input_ids" in f or "prompt_ids" in f) for f in features):
        values["id"] = [example_id(f) for f in features]
    values["loss"] = [float(total) / count if count else None for total, count in rows]
    values["count"] = [int(count) for _total, count in rows]
    if outputs and all(o.predictions for o in outputs):
        pairs = [(p, r) for o in outputs for p, r in zip(o.predictions, o.references)]
        if all(isinstance(v, int) for pair in pairs for v in pair):
            values["label"] = [r for _p, r in pairs]
            values["prediction"] = [p for p, _r in pairs]
        values["correct"] = [float(p == r) for p, r in pairs]
    scores = [sc for o in outputs for sc in o.scores]
    if scores and len(scores) == len(rows):
        values["score"] = [_plain(sc) for sc in scores]
    return values


def example_id(feature: dict) -> str:
    """A stable id of an encoded example: its ``uid`` if it has one, else a hash of its token ids (hex)."""
    from lmforge.data.preference import example_uid

    uid = feature.get("uid")
    if uid is None:
        uid = example_uid(list(feature.get("input_ids") or feature.get("prompt_ids") or []))
    return f"{int(uid):016x}"


def metric_intervals(metrics: dict, outputs: list[EvalOutput], objective: Any) -> dict[str, dict]:
    """Bootstrap intervals of every metric in ``metrics`` (see :mod:`lmforge.evaluate.intervals`):
    loss, perplexity and classification metrics from the per-example rows, the objective's own
    metrics (``eval_metrics``) by recomputing them on resampled examples."""
    from lmforge.evaluate.intervals import output_intervals, system_intervals

    found = system_intervals(metrics["per_example"], metrics.get("labels"))
    own = objective.eval_metrics(outputs)
    names = [k for k, v in metrics.items() if k not in found and k in own
             and isinstance(v, (int, float)) and not isinstance(v, bool)]
    if names:
        singles = _single_outputs(outputs)
        if singles is not None:
            ids = metrics["per_example"].get("id")
            found.update(output_intervals(singles, objective.eval_metrics, names,
                                          ids=ids if ids and len(ids) == len(singles) else None))
    return {k: v for k, v in found.items() if k in metrics or k.startswith("per_class/")}


def _single_outputs(outputs: list[EvalOutput]) -> list[EvalOutput] | None:
    """One EvalOutput per example (split by ``rows``), or None when outputs cannot be split."""
    singles = []
    for o in outputs:
        if not o.rows:
            singles.append(o)
            continue
        n = len(o.rows)
        if any(len(seq) not in (0, n) for seq in (o.predictions, o.references, o.scores)):
            return None
        for i, (total, count) in enumerate(o.rows):
            singles.append(EvalOutput(total, count, o.predictions[i:i + 1], o.references[i:i + 1], o.scores[i:i + 1]))
    return singles


def _plain(value: Any) -> Any:
    """JSON-able copy of a score row (floats rounded to 6 digits)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return value


def summarize(outputs: list[EvalOutput], objective: Any, model: nn.Module, examples: int) -> dict:
    """Metrics from the per-batch ``EvalOutput`` list (see :func:`evaluate`)."""
    loss_total = sum(float(o.loss_total) for o in outputs)
    count = sum(int(o.count) for o in outputs)
    if count == 0:
        raise UserError("no held-out example has a token to score (all were masked or truncated away)",
                        where="data.test", hint="check data.max_length and that examples have completions")
    metrics = lm_metrics(loss_total, count)
    if "perplexity" not in objective.spec.metrics:
        metrics.pop("perplexity")
    predictions = [p for o in outputs for p in o.predictions]
    if predictions:
        references = [r for o in outputs for r in o.references]
        metrics.update(classification_metrics(predictions, references, label_names(model, predictions, references)))
    metrics.update(objective.eval_metrics(outputs))  # objective-specific metrics (e.g. preference accuracy)
    metrics["eval_examples"] = examples
    return metrics


def label_names(model: nn.Module, predictions: list, references: list) -> list[str]:
    """Class names by id from ``model.config.id2label``; ``"0", "1", ...`` when the config has none."""
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    names = {int(k): str(v) for k, v in id2label.items()}
    ids = [int(x) for x in list(predictions) + list(references) if not isinstance(x, str)]
    size = max([len(names), *(i + 1 for i in ids)])
    return [names.get(i, str(i)) for i in range(size)]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block; restore its previous train/eval mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
