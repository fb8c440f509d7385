"""Multi-task data: load each task of ``data.tasks``, tag its features, and mix them into one epoch.

Every task is an ordinary data section (``lmforge.pipeline.multitask.task_sections``), so the usual loaders and
encoders run on it unchanged. Features carry ``"task": int`` (the task's index in ``data.tasks``)
so batches can be routed to per-task heads and evaluation can report per-task metrics.

Mixing (``data.mixing``) decides which features make up one training epoch; the training loop then
shuffles that list as usual:

- ``concatenate``: each task contributes ``round(n_i * weight_i)`` examples (weight 1 = all of it
  once; 2 = each example twice; 0.5 = a seeded half);
- ``interleave``: ``sum(n_i)`` draws, each picking task i with probability ``weight_i / sum(weight)``;
- ``temperature``: the same draws with probability ``(n_i * weight_i) ** (1 / T)`` normalised
  (T = 1: proportional to size; large T: nearly uniform), as in multilingual / T5 mixing.

Within a task, examples are taken in a seeded order and cycled (reshuffled each pass) when a task is
drawn more often than it has examples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from lmforge.config.schema import DataConfig, TaskSource
from lmforge.data.splits import Splits, load_splits


@dataclass(frozen=True)
class TaskData:
    """One task of a multi-task run: its name, mixing weight, own data section and splits."""

    name: str
    weight: float
    data: DataConfig
    splits: Splits


def load_tasks(tasks: list[TaskSource], sections: list[DataConfig], seed: int) -> list[TaskData]:
    """Read every task (in order; ``sections[i]`` is task i's own data section) with :func:`load_splits`."""
    return [TaskData(task.name, task.weight, section, load_splits(section, seed)) for task, section in zip(tasks, sections)]


def merge_splits(tasks: list[TaskData]) -> Splits:
    """All tasks' records in task order (train, eval) and every file read, without duplicates."""
    files = []
    for task in tasks:
        files += [f for f in task.splits.files if f not in files]
    return Splits(*([r for t in tasks for r in getattr(t.splits, part)] for part in ("train", "validation", "test")), files)


def tag_task(features: list[dict], index: int) -> list[dict]:
    """Copies of ``features`` with ``"task": index`` added."""
    return [{**feature, "task": index} for feature in features]


def mixing_probabilities(sizes: list[int], weights: list[float], strategy: str, temperature: float = 2.0) -> list[float]:
    """Probability of drawing each task (sums to 1) for ``interleave`` / ``temperature`` mixing."""
    if strategy == "interleave":
        raw = [float(w) for w in weights]
    elif strategy == "temperature":
        raw = [(n * w) ** (1.0 / temperature) for n, w in zip(sizes, weights)]
    else:
        raise ValueError(f"no draw probabilities for mixing '{strategy}'")
    total = sum(raw)
    if total <= 0:
        raise ValueError("mixing needs at least one task with examples and a positive weight")
    return [r / total for r in raw]


def mix_features(per_task: list[list[dict]], weights: list[float], strategy: str, *, seed: int,
                 temperature: float = 2.0) -> list[dict]:
    """One epoch of training features from every task's features (see the module doc for strategies).

    per_task: each task's (tagged) features, in task order; weights: one positive float per task.
    Deterministic in ``seed``. ``concatenate`` keeps task order; the draws keep draw order (the loop
    shuffles either way). Empty tasks are skipped.
    """
    if len(per_task) != len(weights):
        raise ValueError(f"{len(per_task)} tasks but {len(weights)} weights")
    sizes = [len(f) for f in per_task]
    pools = [_cycle(features, random.Random(f"{seed}:task:{i}")) for i, features in enumerate(per_task)]
    if strategy == "concatenate":
        return [next(pools[i]) for i, (n, w) in enumerate(zip(sizes, weights)) if n
                for _ in range(max(1, round(n * w)))]
    probs = mixing_probabilities(sizes, [w if n else 0.0 for n, w in zip(sizes, weights)], strategy, temperature)
    rng = random.Random(f"{seed}:mix")
    draws = rng.choices(range(len(per_task)), weights=probs, k=sum(sizes))
    return [next(pools[i]) for i in draws]


def _cycle(features: list[dict], rng: random.Random) -> Iterator[dict]:
    """Features in a seeded order, reshuffled after each full pass; endless (nothing for an empty list)."""
    order = list(range(len(features)))
    while order:
        rng.shuffle(order)
        for i in order:
            yield features[i]


def add_task_ids(batch: dict, features: list[dict]) -> dict:
    """``batch`` plus ``"task"``: a (batch,) long tensor of each row's task index."""
    import torch

    return {**batch, "task": torch.tensor([int(f["task"]) for f in features], dtype=torch.long)}


def task_counts(features: list[dict], n_tasks: int) -> list[int]:
    """How many of ``features`` belong to each task index."""
    counts = [0] * n_tasks
    for feature in features:
        counts[int(feature["task"])] += 1
    return counts


__all__ = ["TaskData", "add_task_ids", "load_tasks", "merge_splits", "mix_features", "mixing_probabilities",
           "tag_task", "task_counts"]
