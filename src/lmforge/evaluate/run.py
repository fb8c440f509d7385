"""Run an objective's evaluation over held-out features and turn the outputs into metrics."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn

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
    evaluating every feature on its own (a batch of one): the result gains
    ``"per_example": {"loss": [mean loss per unit of each example], "count": [units],
    "correct": [1.0 / 0.0 per example, only when the objective yields predictions]}``, in feature
    order: what bootstrap intervals and paired before -> after tests resample. An example with no
    scored unit gets loss ``None``. The aggregate metrics are the same as without it.
    """
    if not features:
        raise UserError("there are no held-out examples to evaluate", where="data.eval",
                        hint="give data.eval a file, raise data.eval_fraction, or raise eval.max_examples")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outputs, sizes = _run(objective, model, features, collate, batch_size)
    if per_example and any(len(o.rows) != n for o, n in zip(outputs, sizes)):
        outputs, sizes = _run(objective, model, features, collate, 1)  # no per-row split: one by one
    metrics = summarize(outputs, objective, model, len(features))
    if per_example:
        metrics["per_example"] = per_example_values(outputs)
    return metrics


def _run(objective: Any, model: nn.Module, features: list[dict], collate: Callable[[list[dict]], dict],
         step: int) -> tuple[list[EvalOutput], list[int]]:
    """``objective.eval_step`` over consecutive batches of ``step`` features; outputs and batch sizes."""
    outputs, sizes = [], []
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(features), step):
            chunk = features[start:start + step]
            outputs.append(objective.eval_step(model, _to_device(collate(chunk), device)))
            sizes.append(len(chunk))
    return outputs, sizes


def per_example_values(outputs: list[EvalOutput]) -> dict[str, list]:
    """``{"loss", "count"[, "correct"]}`` lists in feature order (see :func:`evaluate`), from each
    output's ``rows`` or, for one-example outputs without rows, from the output itself."""
    rows = [r for o in outputs for r in (o.rows or [(o.loss_total, o.count)])]
    values: dict[str, list] = {
        "loss": [float(total) / count if count else None for total, count in rows],
        "count": [int(count) for _total, count in rows],
    }
    if outputs and all(o.predictions for o in outputs):
        pairs = [(p, r) for o in outputs for p, r in zip(o.predictions, o.references)]
        values["correct"] = [float(p == r) for p, r in pairs]
    return values


def summarize(outputs: list[EvalOutput], objective: Any, model: nn.Module, examples: int) -> dict:
    """Metrics from the per-batch ``EvalOutput`` list (see :func:`evaluate`)."""
    loss_total = sum(float(o.loss_total) for o in outputs)
    count = sum(int(o.count) for o in outputs)
    if count == 0:
        raise UserError("no held-out example has a token to score (all were masked or truncated away)",
                        where="data.eval", hint="check data.max_length and that examples have completions")
    metrics = lm_metrics(loss_total, count)
    spec_metrics = getattr(getattr(objective, "spec", None), "metrics", ()) or ()
    if "perplexity" not in spec_metrics:
        metrics.pop("perplexity")
    predictions = [p for o in outputs for p in o.predictions]
    if predictions:
        references = [r for o in outputs for r in o.references]
        metrics.update(classification_metrics(predictions, references, label_names(model, predictions, references)))
    extra = getattr(objective, "eval_metrics", None)  # objective-specific metrics (e.g. preference accuracy)
    if extra is not None:
        metrics.update(extra(outputs))
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
