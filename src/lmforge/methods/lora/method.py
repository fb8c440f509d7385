"""LoRA (and DoRA / rsLoRA) through peft's public API.

The saved folder is a plain peft adapter: ``peft.PeftModel.from_pretrained(base, dir)`` loads it
without lmforge. For classification the new head trains and is saved through peft's
``modules_to_save`` (task type SEQ_CLS adds ``classifier`` / ``score`` automatically).
"""

from __future__ import annotations

from typing import Any

from lmforge.methods.lora.config import LoraParams
from lmforge.methods.peft_wrap import TASK_TYPES, PeftWrapMethod
from lmforge.model.task import TaskInfo


def lora_config(params: LoraParams, task: TaskInfo) -> Any:
    """The ``peft.LoraConfig`` for ``params`` on ``task``'s head."""
    from peft import LoraConfig

    target = params.target_modules if isinstance(params.target_modules, str) else list(params.target_modules)
    return LoraConfig(
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=target,
        use_dora=params.use_dora,
        use_rslora=params.use_rslora,
        bias=params.bias,
        task_type=TASK_TYPES[task.head],
    )


def training_lora_config(params: LoraParams, task: TaskInfo, model: Any) -> Any:
    """:func:`lora_config` with plain ``nn.Linear`` targets built as
    :class:`~lmforge.methods.lora.fused.FusedLoraLinear` (peft's layer with a fused training step)."""
    from lmforge.methods.lora.fused import register_fused_linear

    config = lora_config(params, task)
    register_fused_linear(config, model)
    return config


class LoraMethod(PeftWrapMethod):
    """Injects LoRA layers with peft; saves a peft adapter folder; merges with merge_and_unload."""

    build_config = staticmethod(training_lora_config)
    error_where = "method.target_modules"
    error_hint = "use target_modules: all-linear, or names of linear layers in the model (e.g. q_proj, v_proj)"
