"""(IA)^3 through peft: learned scaling vectors; merges into the base weights."""

from __future__ import annotations

from typing import Any

from torch import nn

from lmforge.methods.ia3.config import Ia3Params
from lmforge.methods.peft_wrap import PeftWrapMethod, task_type
from lmforge.model.task import TaskInfo


def ia3_config(params: Ia3Params, task: TaskInfo, model: nn.Module) -> Any:
    """The ``peft.IA3Config``; 'auto' lets peft pick the targets by architecture."""
    from peft import IA3Config

    targets = {}
    if params.target_modules != "auto":
        targets = {"target_modules": list(params.target_modules), "feedforward_modules": list(params.feedforward_modules or [])}
    return IA3Config(task_type=task_type(task), **targets)


class Ia3Method(PeftWrapMethod):
    build_config = staticmethod(ia3_config)
