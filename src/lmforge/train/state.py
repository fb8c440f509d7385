"""Plain data the loop carries: the step plan, the resumable loop state, the result, batch order."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from lmforge.config.schema import TrainConfig


@dataclass
class TrainResult:
    """What ``train`` returns: optimizer steps done, the best evaluation and the eval history."""

    steps: int
    best_step: int | None
    best_metrics: dict[str, float]
    history: list[dict[str, Any]]
    stopped_early: bool
    base_rounded: bool = False  # frozen weights were stored in bf16 while training (rounded in place)
    fit: dict[str, Any] | None = None  # a solved run's summary (lmforge.train.fitted.record_fit), else None


@dataclass(frozen=True)
class StepPlan:
    """How many micro-/optimizer steps the run makes and when it evaluates / saves.

    Accumulation windows never cross an epoch boundary (the last window of an epoch may hold
    fewer micro-batches; the token-weighted loss makes that exact).
    """

    examples: int
    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    eval_every: int
    save_every: int
    log_every: int


def plan_steps(examples: int, train_cfg: TrainConfig) -> StepPlan:
    """Step plan for ``examples`` training features under ``train_cfg``."""
    if examples < 1:
        raise ValueError("no training examples")
    micro = math.ceil(examples / train_cfg.batch_size)
    per_epoch = math.ceil(micro / train_cfg.grad_accum)
    # A run's epochs is never None here: the plan fills in the method's default (MethodSpec.epochs_for);
    # only a direct library call with a TrainConfig that names none falls back to one pass.
    epochs = 1.0 if train_cfg.epochs is None else train_cfg.epochs
    total = train_cfg.max_steps or max(1, math.ceil(epochs * per_epoch))
    eval_every = train_cfg.eval_every or per_epoch
    save_every = train_cfg.save_every or eval_every
    return StepPlan(examples, micro, per_epoch, total, eval_every, save_every, train_cfg.log_every)


@dataclass
class LoopState:
    """Everything besides weights/optimizer/scheduler/RNG that a resume needs.

    epoch / position: the next micro-batch to train is micro-batch ``position`` of ``epoch``.
    best_*: the best evaluation so far (by best_metric); stop_best / bad_evals: early stopping.
    """

    step: int = 0
    epoch: int = 0
    position: int = 0
    best_value: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    stop_best: float | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoopState":
        return cls(**data)


def epoch_order(examples: int, seed: int, epoch: int) -> list[int]:
    """Deterministic permutation of ``range(examples)`` from (seed, epoch) alone."""
    order = list(range(examples))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def next_window(plan: StepPlan, state: LoopState, batch_size: int, grad_accum: int, seed: int) -> list[list[int]]:
    """Example indices of the next accumulation window's micro-batches; advances ``state``."""
    if state.position >= plan.micro_per_epoch:
        state.epoch, state.position = state.epoch + 1, 0
    order = epoch_order(plan.examples, seed, state.epoch)
    end = min(state.position + grad_accum, plan.micro_per_epoch)
    window = [order[i * batch_size : (i + 1) * batch_size] for i in range(state.position, end)]
    state.position = end
    return window


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in ``mode`` ("min" / "max")."""
    if best is None:
        return True
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta
