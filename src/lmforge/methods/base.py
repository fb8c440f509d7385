"""The method protocol: how a method reparameterizes a loaded model and saves / restores it.

A method never branches on the objective or device; what it needs to know about the task comes
in :class:`TaskInfo`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from lmforge.methods.registry import MethodParams, MethodSpec
from lmforge.model.task import TaskInfo

__all__ = ["Method", "TaskInfo", "count_parameters", "trainable_state"]


class Method(Protocol):
    spec: MethodSpec
    params: MethodParams

    def load_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for ``from_pretrained`` (e.g. a quantization config)."""

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """Return the model to train: requires_grad set, adapters injected. May wrap ``model``."""

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """Save what this method trained into ``out_dir`` in the ecosystem's format
        (a PEFT adapter folder for peft methods; a full HF model for ``full``)."""

    def load(self, base: nn.Module, in_dir: Path, task: TaskInfo) -> nn.Module:
        """Rebuild the trained model over a freshly loaded ``base`` from ``save``'s folder."""

    def merge(self, model: nn.Module) -> nn.Module:
        """A plain transformers model with the trained weights folded in (mergeable methods)."""


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train, by name: what a checkpoint must store to resume."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
