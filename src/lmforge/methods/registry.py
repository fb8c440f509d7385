"""Method registry. Torch-free: specs and config classes only; implementations load lazily.

A method declares WHAT is trainable. Each lives in ``methods/<name>/`` with
``config.py`` (pydantic params, torch-free), ``method.py`` (the implementation) and an
``__init__.py`` that calls :func:`register_method`. Adding one = that folder + one import line in
``methods/__init__.py``; the CLI, schema checks, ``lmforge methods`` and the contract tests pick
it up from here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from lmforge.config.hints import did_you_mean
from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.methods.base import Method


class MethodParams(BaseModel):
    """Base for every method's parameters: strict and frozen like the rest of the config.

    Also the torch-free half of the method protocol: what the plan (``lmforge validate``) and the
    estimate need to know about a method under these settings. Each hook has a default here; a
    method's params class overrides the ones that depend on its settings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def mergeable(self) -> bool:
        """Whether these settings still merge into the base weights (narrows ``MethodSpec.mergeable``)."""
        return True

    @property
    def frozen_bits(self) -> int | None:
        """Storage bits of the frozen base weights when the method quantizes them (e.g. 4), else None
        (the base keeps the runtime's dtype)."""
        return None

    def check_run(self, config: Any, objective: Any, where: str) -> None:
        """Cross-axis rules that depend on these settings: raise a UserError naming the field
        (``where`` is the config file). ``config``: the RunConfig; ``objective``: the run's
        ObjectiveSpec (name, head, kinds). Default: none."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: type[MethodParams]
    factory: str  # "module.path:ClassName", imported only when the method is built
    trains: str  # one line: what becomes trainable
    mergeable: bool  # can be folded into the base weights for a plain transformers export
    default_lr: float  # peak lr when train.lr is not set: measured per method (benchmarks/method_defaults.py)
    classification_lr: float | None = None  # the same on a classification head, where it differs from default_lr
    classification_epochs: float | None = None  # train.epochs left unset on a classification head (else 1)
    quantized_base: bool = False  # needs / loads a quantized base model
    objectives: tuple[str, ...] | None = None  # None = every objective
    guidance: str = ""  # one line of advice from our own measurements
    can_pack: bool = True  # False: cannot train on packed rows (e.g. virtual tokens before each row)
    saves_adapter: bool = True  # False: save() writes the whole model, which the merged export already is
    extras: dict[str, Any] = field(default_factory=dict)

    def lr_for(self, head: str) -> float:
        """The default peak lr on an objective with ``head`` ("causal_lm" / "sequence_classification")."""
        if head == "sequence_classification" and self.classification_lr is not None:
            return self.classification_lr
        return self.default_lr

    def epochs_for(self, head: str) -> float:
        """The default ``train.epochs`` on an objective with ``head``: 1, or ``classification_epochs``."""
        if head == "sequence_classification" and self.classification_epochs is not None:
            return self.classification_epochs
        return 1.0

    def default_lrs(self) -> str:
        """The default lr(s) in words, e.g. ``0.001 (classification 0.0005)``."""
        if self.classification_lr is None or self.classification_lr == self.default_lr:
            return f"{self.default_lr:g}"
        return f"{self.default_lr:g} (classification {self.classification_lr:g})"


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    if spec.name in METHODS:
        raise ValueError(f"method '{spec.name}' registered twice")
    METHODS[spec.name] = spec
    return spec


def get_method_spec(name: str) -> MethodSpec:
    import lmforge.methods  # noqa: F401  (registers the built-in methods)

    if name not in METHODS:
        raise UserError(
            f"unknown method '{name}'{did_you_mean(name, METHODS)}",
            where="method.name",
            hint=f"available: {', '.join(sorted(METHODS))}",
        )
    return METHODS[name]


def is_mergeable(spec: MethodSpec, params: MethodParams) -> bool:
    """The spec's capability, narrowed by the method's own settings (``params.mergeable``)."""
    return spec.mergeable and params.mergeable


def build_method(name: str, params: MethodParams) -> "Method":
    """Import the implementation of ``name`` and construct it with validated ``params``."""
    spec = get_method_spec(name)
    module, _, attr = spec.factory.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(spec, params)
