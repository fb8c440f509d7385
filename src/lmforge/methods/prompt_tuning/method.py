"""Prompt tuning through peft: ``num_virtual_tokens`` trained embeddings prepended to every input."""

from __future__ import annotations

from typing import Any

from torch import nn

from lmforge.methods.prompt_tuning.config import PromptTuningParams
from lmforge.methods.peft_wrap import PeftWrapMethod, model_path, task_type
from lmforge.model.task import TaskInfo

INITS = {"vocab": "SAMPLE_VOCAB", "random": "RANDOM", "text": "TEXT"}


def prompt_tuning_config(params: PromptTuningParams, task: TaskInfo, model: nn.Module) -> Any:
    """The ``peft.PromptTuningConfig``; text init tokenizes ``init_text`` with the model's own tokenizer."""
    from peft import PromptTuningConfig

    text = {"prompt_tuning_init_text": params.init_text, "tokenizer_name_or_path": model_path(model)}
    return PromptTuningConfig(
        task_type=task_type(task),
        num_virtual_tokens=params.num_virtual_tokens,
        prompt_tuning_init=INITS[params.init],
        **(text if params.init == "text" else {}),
    )


class PromptTuningMethod(PeftWrapMethod):
    build_config = staticmethod(prompt_tuning_config)
