"""Multi-task glue for :mod:`lmforge.pipeline` (``data.tasks``): load, label, encode, mix, collate, export.

A run with ``data.tasks`` trains several named datasets at once. Each task is an ordinary data
section (its own format, columns, labels, system prompt), loaded and encoded by the usual stage
code; features are tagged with their task index and mixed by ``data.mixing``
(:mod:`lmforge.data.tasks`). Classification tasks get one head each on a shared encoder
(:mod:`lmforge.model.multihead`); causal-LM tasks share the one LM head. Evaluation reports
``task/<name>/<metric>`` next to the overall metrics (:mod:`lmforge.evaluate.tasks`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

from lmforge.atomic import atomic_write_text
from lmforge.config import RunConfig
from lmforge.errors import UserError


def load_task_data(config: RunConfig) -> tuple[list, Any]:
    """``(tasks, splits)``: every task's :class:`~lmforge.data.tasks.TaskData` and their merged splits."""
    from lmforge.data.tasks import load_tasks, merge_splits

    if config.train.memory.model_dump().get("shards"):
        raise UserError("train.memory.shards is not supported with data.tasks yet", where="train.memory.shards",
                        hint="remove train.memory.shards")
    tasks = load_tasks(config.data, config.run.seed)
    return tasks, merge_splits(tasks)


def task_labels(tasks: list) -> list[list[str]]:
    """Each classification task's label set (its ``labels``, else the sorted labels of its records)."""
    from lmforge.data import label_set

    return [label_set(t.splits.train + t.splits.eval, t.data) for t in tasks]


def multihead_task(tasks: list, labels: list[list[str]]):
    """TaskInfo for several classification heads on one encoder (one per task, in task order)."""
    from lmforge.model.task import TaskInfo

    return TaskInfo("sequence_classification", max(len(ls) for ls in labels), None,
                    tuple((t.name, tuple(ls)) for t, ls in zip(tasks, labels)))


def encode_tasks(tasks: list, labels: list | None, objective, tokenizer, config: RunConfig,
                 say: Callable[[str], None]) -> tuple[list, list]:
    """``(train, eval)`` features: each task encoded with its own section and tagged with its index;
    train mixed by ``data.mixing``; eval kept per task (``eval.max_examples`` applies per task)."""
    from lmforge.data.tasks import mix_features, tag_task, task_counts

    per_task, eval_features = [], []
    for i, t in enumerate(tasks):
        extra = {"labels": labels[i]} if labels else {}
        per_task.append(tag_task(objective.encode(t.splits.train, tokenizer, t.data, **extra), i))
        records = t.splits.eval[: config.eval.max_examples] if config.eval.max_examples else t.splits.eval
        eval_features += tag_task(objective.encode(records, tokenizer, t.data, **extra), i)
    train = mix_features(per_task, [t.weight for t in tasks], config.data.mixing, seed=config.run.seed,
                         temperature=config.data.temperature)
    counts = task_counts(train, len(tasks))
    say(f"mixing ({config.data.mixing}): " + ", ".join(f"{t.name} {n}" for t, n in zip(tasks, counts))
        + " training examples per epoch")
    return train, eval_features


def routed_collate(objective, tokenizer) -> Callable[[list[dict]], dict]:
    """The objective's collate plus each row's task index (``task``), which routes rows to their heads."""
    from lmforge.data.tasks import add_task_ids

    return lambda feats: add_task_ids(objective.collate(feats, tokenizer), feats)


def evaluate_session(s, model, batch_size: int, per_example: bool) -> dict:
    """Overall and per-task metrics of ``s`` (a pipeline Session of a multi-task run)."""
    from lmforge.evaluate.tasks import evaluate_tasks

    names = [(t.name, s.task_labels[i] if s.task_labels else None) for i, t in enumerate(s.tasks)]
    return evaluate_tasks(s.objective, model, s.eval_features, s.collate, batch_size, names, per_example=per_example)


def export_multitask(s, folder: Path) -> tuple[str, dict]:
    """The merged encoder + per-task heads (:func:`lmforge.model.multihead.save_multihead`), reloaded
    and compared with the run's model on a few held-out rows; returns ``(folder, parity dict)``."""
    import torch

    from lmforge.evaluate.run import model_device
    from lmforge.model.multihead import load_multihead, save_multihead

    save_multihead(s.method.merge(copy.deepcopy(s.model)), s.tokenizer, folder)
    device = model_device(s.model)
    batch = {k: v.to(device) for k, v in s.collate(s.eval_features[: s.config.export.parity_prompts]).items()
             if k != "labels"}
    reloaded = load_multihead(folder).to(device)
    with torch.no_grad():
        want, got = s.model(**batch).logits.float(), reloaded(**batch).logits.float()
    used = want > torch.finfo(torch.float32).min / 2  # padded label slots of other tasks are not compared
    diff = float((want - got)[used].abs().max())
    result = {"passed": diff <= 1e-3, "max_abs_logit_diff": diff, "rows": int(batch["input_ids"].shape[0])}
    atomic_write_text(folder / "parity.json", json.dumps(result, indent=1))
    return str(folder), result


def task_summary(s) -> dict:
    """For the report's "data" section: the mixing and each task's format, size and weight ({} without tasks)."""
    if not s.tasks:
        return {}
    from lmforge.data.tasks import task_counts

    packed = s.config.data.packing  # packed rows hold several examples: no per-task count
    mixed = [None] * len(s.tasks) if packed else task_counts(s.train_features, len(s.tasks))
    return {"mixing": s.config.data.mixing, "tasks": {
        t.name: f"{t.data.format}, {len(t.splits.train)} train / {len(t.splits.eval)} held-out, weight {t.weight:g}"
                + (f", {n} per epoch" if n is not None else "") for t, n in zip(s.tasks, mixed)}}
