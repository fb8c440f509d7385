"""LoRA (and DoRA / rsLoRA) through peft's public API.

The saved folder is a plain peft adapter: ``peft.PeftModel.from_pretrained(base, dir)`` loads it
without lmforge. For classification the new head trains and is saved through peft's
``modules_to_save`` (task type SEQ_CLS adds ``classifier`` / ``score`` automatically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from lmforge.methods.lora.config import LoraParams
from lmforge.methods.registry import MethodSpec
from lmforge.model.task import TaskInfo

TASK_TYPES = {"causal_lm": "CAUSAL_LM", "sequence_classification": "SEQ_CLS"}


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


class LoraMethod:
    """Injects LoRA layers with peft; saves a peft adapter folder; merges with merge_and_unload."""

    def __init__(self, spec: MethodSpec, params: LoraParams):
        self.spec = spec
        self.params = params

    def load_kwargs(self) -> dict[str, Any]:
        return {}

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """Wrap ``model`` in a ``PeftModel``: only LoRA matrices (+ head / biases per params) train."""
        from peft import get_peft_model

        from lmforge.errors import UserError

        try:
            return get_peft_model(model, lora_config(self.params, task))
        except ValueError as exc:  # e.g. target_modules matching nothing in this model
            raise UserError(
                f"method 'lora' cannot be applied to this model: {exc}",
                where="method.target_modules",
                hint="use target_modules: all-linear, or names of linear layers in the model (e.g. q_proj, v_proj)",
            ) from exc

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """peft ``save_pretrained``: adapter_config.json + adapter_model.safetensors."""
        model.save_pretrained(str(out_dir))

    def load(self, base: nn.Module, in_dir: Path, task: TaskInfo) -> nn.Module:
        """Load the adapter over a freshly loaded ``base`` for inference (not trainable)."""
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(in_dir), is_trainable=False)

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the LoRA update into the base weights; returns the plain transformers model."""
        return model.merge_and_unload()
