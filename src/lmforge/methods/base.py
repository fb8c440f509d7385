"""The method protocol: how a method reparameterizes a loaded model and saves / restores it.

A method never branches on the objective or device; what it needs to know about the task comes
in :class:`TaskInfo`. Every hook the rest of lmforge calls is declared here; :class:`MethodBase`
gives each optional hook its default, so a method implements ``apply`` / ``save`` / ``load`` and
overrides only what differs. Settings-dependent, torch-free hooks (``mergeable``, ``frozen_bits``,
``check_run``) live on :class:`~lmforge.methods.registry.MethodParams`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from lmforge.errors import UserError
from lmforge.methods.registry import MethodParams, MethodSpec
from lmforge.model.reference import FrozenCopy, ReferencePolicy
from lmforge.model.task import TaskInfo

__all__ = ["Method", "MethodBase", "TaskInfo", "Usage", "count_parameters", "trainable_state"]


@dataclass(frozen=True)
class Usage:
    """How to load an exported adapter folder, for its model card: the library that loads it (the
    card's ``library_name``) and markdown lines (prose and a python code block)."""

    library: str
    lines: list[str]


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
        """Rebuild the trained model over a freshly loaded ``base`` from ``save``'s folder (eval mode)."""

    def merge(self, model: nn.Module) -> nn.Module:
        """A plain transformers model with the trained weights folded in (mergeable methods)."""

    def apply_on_meta(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """For ``lmforge estimate``: the method on a meta-device base (no weights), creating exactly the
        trainable parameters :meth:`apply` would. Default: :meth:`apply` itself."""
        return self.apply(model, task)  # type: ignore[attr-defined]

    def fit(self, model: nn.Module, train_features: Sequence[dict], collate: Callable, *, seed: int) -> dict | None:
        """Solve the trainable parameters directly instead of running the training loop; a JSON-able
        summary, or None to train with the loop."""

    def reference(self, model: nn.Module) -> ReferencePolicy:
        """The model before training, for objectives that compare with it (dpo, kto, grpo); called
        right after ``apply``, before any training step."""

    def usage(self, folder: str, base: str, task: TaskInfo) -> Usage:
        """How to load the exported ``folder`` over the base model ``base`` (hub id or path), for the card."""


class MethodBase:
    """Defaults for the optional hooks of :class:`Method`; subclasses define apply / save / load."""

    def __init__(self, spec: MethodSpec, params: MethodParams):
        self.spec = spec
        self.params = params

    def load_kwargs(self) -> dict[str, Any]:
        """No extra ``from_pretrained`` arguments."""
        return {}

    def merge(self, model: nn.Module) -> nn.Module:
        """Not mergeable: a UserError naming ``export.merged``."""
        raise UserError(f"method '{self.spec.name}' cannot be merged into the base weights", where="export.merged",
                        hint="set export.merged: false and use the exported adapter folder")

    def apply_on_meta(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """For ``lmforge estimate``: the method on a meta-device base (no weights), creating exactly the
        trainable parameters :meth:`apply` would. Default: :meth:`apply` itself."""
        return self.apply(model, task)  # type: ignore[attr-defined]

    def fit(self, model: nn.Module, train_features: Sequence[dict], collate: Callable, *, seed: int) -> dict | None:
        """Train with the loop."""
        return None

    def reference(self, model: nn.Module) -> ReferencePolicy:
        """A frozen copy of ``model`` as it is now."""
        return FrozenCopy(model)

    def usage(self, folder: str, base: str, task: TaskInfo) -> Usage:
        """lmforge's loader, which reads the folder's ``lmforge.json`` (base model, task, method)."""
        return Usage("transformers", [
            f"Trained with lmforge method `{self.spec.name}` ({self.spec.trains}). Load it over its base model "
            "with lmforge, or serve it with `lmforge serve FOLDER`:", "",
            "```python", "from lmforge.export import load_export", "",
            f"model, tokenizer = load_export({folder!r})", "```", ""])


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train, by name: what a checkpoint must store to resume."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
