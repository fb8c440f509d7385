"""Objective registry. Torch-free: specs and config classes; implementations load lazily.

An objective is WHICH loss on WHICH example format. Each lives in ``objectives/<name>/``
(``config.py``, ``objective.py``, ``__init__.py`` registering an :class:`ObjectiveSpec`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from lmforge.config.hints import did_you_mean
from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.objectives.base import Objective


class ObjectiveParams(BaseModel):
    """Base for every objective's parameters (strict, frozen), and the torch-free half of the objective
    protocol: hooks the plan calls, each with its default here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def check_run(self, config: Any, where: str) -> None:
        """Cross-axis rules that depend on these settings: raise a UserError naming the field
        (``where`` is the config file). ``config``: the RunConfig. Default: none."""


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str
    params: type[ObjectiveParams]
    factory: str  # "module.path:ClassName"
    kinds: tuple[str, ...]  # kinds of data format it consumes (lmforge.data.formats: text, messages, labelled, pairs)
    head: Literal["causal_lm", "sequence_classification"]
    default_metric: str  # picks the best checkpoint unless eval.metric says otherwise
    metric_mode: Literal["min", "max"]
    metrics: tuple[str, ...]  # metric names its evaluation reports
    can_pack: bool = False  # examples may be packed into shared rows
    summary: str = ""


OBJECTIVES: dict[str, ObjectiveSpec] = {}


def register_objective(spec: ObjectiveSpec) -> ObjectiveSpec:
    if spec.name in OBJECTIVES:
        raise ValueError(f"objective '{spec.name}' registered twice")
    OBJECTIVES[spec.name] = spec
    return spec


def get_objective_spec(name: str) -> ObjectiveSpec:
    import lmforge.objectives  # noqa: F401  (registers the built-in objectives)

    if name not in OBJECTIVES:
        raise UserError(
            f"unknown objective '{name}'{did_you_mean(name, OBJECTIVES)}",
            where="objective.name",
            hint=f"available: {', '.join(sorted(OBJECTIVES))}",
        )
    return OBJECTIVES[name]


def build_objective(name: str, params: ObjectiveParams) -> "Objective":
    spec = get_objective_spec(name)
    module, _, attr = spec.factory.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(spec, params)
