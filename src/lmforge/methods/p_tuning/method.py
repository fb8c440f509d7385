"""P-tuning through peft: a prompt encoder (MLP or LSTM) produces the virtual-token embeddings."""

from __future__ import annotations

from typing import Any

from torch import nn

from lmforge.methods.p_tuning.config import PTuningParams
from lmforge.methods.peft_wrap import PeftWrapMethod, task_type
from lmforge.model.task import TaskInfo


def p_tuning_config(params: PTuningParams, task: TaskInfo, model: nn.Module) -> Any:
    """The ``peft.PromptEncoderConfig`` for ``params``."""
    from peft import PromptEncoderConfig

    return PromptEncoderConfig(
        task_type=task_type(task),
        num_virtual_tokens=params.num_virtual_tokens,
        encoder_reparameterization_type=params.encoder.upper(),
        encoder_hidden_size=params.encoder_hidden_size,
        encoder_num_layers=params.encoder_num_layers,
        encoder_dropout=params.encoder_dropout,
    )


class PTuningMethod(PeftWrapMethod):
    build_config = staticmethod(p_tuning_config)
