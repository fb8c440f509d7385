"""Per-task evaluation of a multi-task run: the overall metrics plus ``task/<name>/<metric>`` for each task.

Held-out features carry ``"task": int`` (see ``lmforge.data.tasks``). Each task's features are
evaluated in batches of that task only, so per-task metrics use the task's own label names.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from lmforge.errors import UserError
from lmforge.evaluate.metrics import classification_metrics, lm_metrics
from lmforge.evaluate.run import _to_device, eval_mode, model_device, per_example_values
from lmforge.objectives.base import EvalOutput

# Classification scores averaged over tasks for the overall result (accuracy is over all examples).
MACRO = ("precision_macro", "recall_macro", "f1_macro")
TASK_SCALARS = ("eval_loss", "perplexity", "accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_micro")


def evaluate_tasks(objective: Any, model: nn.Module, features: list[dict], collate: Callable[[list[dict]], dict],
                   batch_size: int, tasks: list[tuple[str, list[str] | None]], *, per_example: bool = False) -> dict:
    """Evaluate ``features`` task by task; return overall and per-task metrics (JSON-serialisable).

    tasks: ``[(name, labels or None)]`` by task index (labels name a classification task's class ids).
    Overall: ``eval_loss`` (weighted by units over every task), ``perplexity`` when the objective
    reports it, for classification ``accuracy`` over all examples and ``precision/recall/f1_macro``
    as the mean of the tasks' values; ``eval_examples``. Per task: ``task/<name>/<metric>`` scalars
    (``eval_loss``, ``perplexity`` or ``accuracy``, ``precision_macro``, ``recall_macro``,
    ``f1_macro``, ``f1_micro``) and the full per-task result (per-class scores,
    confusion matrix) under ``"tasks": {name: {...}}``. With ``per_example``: per-example values
    (see ``lmforge.evaluate.run.evaluate``) in the order of the features grouped by task index.
    """
    if not features:
        raise UserError("there are no held-out examples to evaluate", where="data.tasks",
                        hint="give the tasks eval data or raise eval.max_examples")
    groups: dict[int, list[dict]] = {}
    for feature in features:
        groups.setdefault(int(feature["task"]), []).append(feature)
    spec_metrics = objective.spec.metrics
    metrics: dict[str, Any] = {}
    per_task: dict[str, dict] = {}
    every: list[EvalOutput] = []
    for index in sorted(groups):
        name, labels = tasks[index]
        outputs = _outputs(objective, model, groups[index], collate, batch_size, per_example)
        every += outputs
        per_task[name] = _task_metrics(outputs, labels, "perplexity" in spec_metrics, len(groups[index]))
        metrics.update({f"task/{name}/{key}": per_task[name][key] for key in TASK_SCALARS if key in per_task[name]})
    overall = _task_metrics(every, None, "perplexity" in spec_metrics, len(features))
    if all("accuracy" in m for m in per_task.values()):
        correct = sum(m["accuracy"] * m["examples"] for m in per_task.values())
        overall["accuracy"] = correct / len(features)
        overall.update({key: sum(m[key] for m in per_task.values()) / len(per_task) for key in MACRO})
    result = {**{k: v for k, v in overall.items() if k != "examples"}, "eval_examples": len(features), **metrics,
              "tasks": per_task}
    if per_example:
        result["per_example"] = per_example_values(every)
    return result


def _task_metrics(outputs: list[EvalOutput], labels: list[str] | None, perplexity: bool, examples: int) -> dict:
    """Loss (and perplexity) over ``outputs``; classification metrics when they carry predictions and ``labels``."""
    count = sum(int(o.count) for o in outputs)
    if count == 0:
        raise UserError("no held-out example has a token to score (all were masked or truncated away)",
                        where="data.tasks", hint="check data.max_length and that examples have completions")
    metrics = lm_metrics(sum(float(o.loss_total) for o in outputs), count)
    if not perplexity:
        metrics.pop("perplexity")
    predictions = [p for o in outputs for p in o.predictions]
    if predictions and labels is not None:
        references = [r for o in outputs for r in o.references]
        metrics.update(classification_metrics(predictions, references, labels))
    metrics["examples"] = examples
    return metrics


def _outputs(objective: Any, model: nn.Module, features: list[dict], collate: Callable, batch_size: int,
             per_example: bool) -> list[EvalOutput]:
    """``objective.eval_step`` over batches of ``features``; one example per batch when per-example
    values are wanted and the objective does not split batches into rows."""
    outputs = _run(objective, model, features, collate, batch_size)
    if per_example and batch_size > 1 and any(len(getattr(o, "rows", None) or []) != n
                                               for o, n in zip(outputs, _sizes(len(features), batch_size))):
        outputs = _run(objective, model, features, collate, 1)
    return outputs


def _run(objective: Any, model: nn.Module, features: list[dict], collate: Callable, step: int) -> list[EvalOutput]:
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        return [objective.eval_step(model, _to_device(collate(features[i:i + step]), device))
                for i in range(0, len(features), step)]


def _sizes(n: int, step: int) -> list[int]:
    return [min(step, n - i) for i in range(0, n, step)]
