"""Prefix tuning through peft: trained past key/values for ``num_virtual_tokens`` positions."""

from __future__ import annotations

from typing import Any

from torch import nn

from lmforge.methods.prefix_tuning.config import PrefixTuningParams
from lmforge.methods.peft_wrap import PeftWrapMethod, task_type
from lmforge.model.task import TaskInfo


def prefix_tuning_config(params: PrefixTuningParams, task: TaskInfo, model: nn.Module) -> Any:
    """The ``peft.PrefixTuningConfig`` for ``params``."""
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(
        task_type=task_type(task),
        num_virtual_tokens=params.num_virtual_tokens,
        prefix_projection=params.projection,
        encoder_hidden_size=params.projection_hidden_size,
    )


class PrefixTuningMethod(PeftWrapMethod):
    build_config = staticmethod(prefix_tuning_config)
