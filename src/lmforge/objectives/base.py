"""The objective protocol: encode examples, collate batches, compute a token-weighted loss.

Loss contract (the one place gradient-accumulation correctness comes from): ``loss`` returns the
SUM of per-unit losses (units = label tokens for language modelling, examples for
classification) and the number of units. The training loop divides by the total number of
units in the whole accumulation window, so batch 8 x accum 1 == batch 1 x accum 8.

Every hook the rest of lmforge calls is declared on :class:`Objective`; :class:`ObjectiveBase`
gives the optional ones (``bind``, ``eval_metrics``) their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn

from lmforge.config.schema import DataConfig
from lmforge.model.reference import ReferencePolicy
from lmforge.model.task import TaskInfo
from lmforge.objectives.registry import ObjectiveParams, ObjectiveSpec


@dataclass
class LossOutput:
    total: torch.Tensor  # scalar: sum of per-unit losses in this micro-batch
    count: int  # number of units summed (label tokens or examples)
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalOutput:
    """What one evaluation batch yields; ``evaluate/`` turns a list of these into metrics."""

    loss_total: float
    count: int
    predictions: list[Any] = field(default_factory=list)  # e.g. predicted label ids
    references: list[Any] = field(default_factory=list)  # e.g. gold label ids
    scores: list[Any] = field(default_factory=list)  # e.g. class probabilities
    # Optional per-example split of loss_total / count, one (loss_total, count) per batch row, in
    # order: lets evaluation report per-example values from batched forwards.
    rows: list[tuple[float, int]] = field(default_factory=list)


def per_row(losses: torch.Tensor) -> list[tuple[float, int]]:
    """``EvalOutput.rows`` of an objective with one loss per example (a pair, a prompt): ``(loss, 1)`` each, so
    per-example values come from the batched forward (not from re-running every example alone, in another
    batch shape than the reference log-probs cached from the batched one)."""
    return [(float(x), 1) for x in losses.detach().float().tolist()]


def credit(margin: float) -> float:
    """A preference accuracy's credit for one example whose reward ``margin`` should be positive: 1, 0 when
    negative, and 0.5 for a tie: before training the policy is the reference and every implicit reward is
    exactly 0, which is chance, not "always wrong"."""
    return 1.0 if margin > 0 else 0.5 if margin == 0 else 0.0


class Objective(Protocol):
    spec: ObjectiveSpec
    params: ObjectiveParams

    def task_info(self, labels: list[str] | None, model_config: Any | None = None) -> TaskInfo:
        """Which head to load; ``labels`` is the classification label set (else None)."""

    def encode(self, records: list[dict], tokenizer: Any, data: DataConfig) -> list[dict]:
        """Canonical records (see ``lmforge.data``) -> per-example token features."""

    def collate(self, features: list[dict], tokenizer: Any) -> dict[str, torch.Tensor]:
        """Features -> one padded (or packed) batch of tensors."""

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """Units ``loss(model, batch)`` will sum over, known before any forward (the training
        loop divides every micro-batch loss by the count of the whole accumulation window)."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Token-weighted loss sum and unit count for one micro-batch."""

    def eval_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> EvalOutput:
        """Loss sum / count plus predictions and references for metrics (no grad)."""

    def bind(self, model: nn.Module, tokenizer: Any = None,
             reference: Callable[[], ReferencePolicy] | None = None) -> None:
        """Called once after the method is applied, before training: ``reference()`` builds the
        method's reference policy (the model before training) for objectives that compare with it."""

    def eval_metrics(self, outputs: list[EvalOutput]) -> dict[str, float]:
        """Metrics only this objective computes, from all evaluation outputs (e.g. preference accuracy)."""


class ObjectiveBase:
    """Defaults for the optional hooks of :class:`Objective`."""

    def __init__(self, spec: ObjectiveSpec, params: ObjectiveParams):
        self.spec = spec
        self.params = params

    def bind(self, model: nn.Module, tokenizer: Any = None,
             reference: Callable[[], ReferencePolicy] | None = None) -> None:
        """Nothing to fix before training."""

    def eval_metrics(self, outputs: list[EvalOutput]) -> dict[str, float]:
        """No metrics beyond loss (and classification metrics from predictions)."""
        return {}
