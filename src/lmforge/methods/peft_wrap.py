"""A method that is one peft config: shared by lora, prompt_tuning, prefix_tuning, p_tuning and ia3.

Each of those folders supplies only ``build_config(params, task, model)``; this class does the
rest through peft's public API. Saved folders are plain peft adapter folders
(``peft.PeftModel.from_pretrained(base, dir)`` loads them without lmforge). For classification,
peft's SEQ_CLS task type also trains and saves the new head (``modules_to_save``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

from torch import nn

from lmforge.errors import UserError
from lmforge.methods.base import MethodBase, Usage
from lmforge.model.task import TaskInfo

TASK_TYPES = {"causal_lm": "CAUSAL_LM", "sequence_classification": "SEQ_CLS"}

ConfigBuilder = Callable[[Any, TaskInfo, nn.Module], Any]


class PeftWrapMethod(MethodBase):
    """``apply`` = ``get_peft_model(model, build_config(params, task, model))``; merge only when
    ``spec.mergeable`` (peft ``merge_and_unload``); the reference policy is the adapter switched off."""

    build_config: ConfigBuilder  # set by each subclass: (params, task, model) -> peft config
    error_where = "method.name"  # the field a user changes when peft cannot adapt the model
    error_hint = "check the method parameters for this architecture, or use method lora"

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """Wrap ``model`` in a trainable ``PeftModel``; UserError when peft cannot adapt it."""
        from peft import get_peft_model

        config = type(self).build_config(self.params, task, model)
        if hasattr(config, "fan_in_fan_out") and _has_conv1d(model):
            config.fan_in_fan_out = True  # GPT-2-style Conv1D layers store weights transposed (peft warns otherwise)
        try:
            return get_peft_model(model, config)
        except (ValueError, TypeError, AttributeError, NotImplementedError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"method '{self.spec.name}' cannot be applied to this model: {first}",
                where=self.error_where,
                hint=self.error_hint,
            ) from exc

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """peft ``save_pretrained``: adapter_config.json + adapter_model.safetensors."""
        model.save_pretrained(str(out_dir))

    def load(self, base: nn.Module, in_dir: Path, task: TaskInfo) -> nn.Module:
        """Load the saved folder over a freshly loaded ``base`` for inference (not trainable)."""
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(in_dir), is_trainable=False).eval()

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the trained weights into the base (mergeable methods only)."""
        if not self.spec.mergeable:
            return super().merge(model)
        return model.merge_and_unload()

    def reference(self, model: nn.Module) -> "AdapterDisabled":
        """The same model with its adapter switched off: no second copy of the weights."""
        return AdapterDisabled()

    def usage(self, folder: str, base: str, task: TaskInfo) -> Usage:
        return peft_usage(folder, base, task)


class AdapterDisabled:
    """Reference policy of peft methods: ``policy.disable_adapter()`` for the block (the base model)."""

    @contextlib.contextmanager
    def use(self, policy: nn.Module) -> Iterator[nn.Module]:
        with policy.disable_adapter():
            yield policy


def peft_usage(folder: str, base: str, task: TaskInfo) -> Usage:
    """Card usage of a plain peft adapter folder: ``PeftModel.from_pretrained`` over the base (with
    the label names for a classifier)."""
    if task.head == "sequence_classification":
        labels = list(task.labels or ())
        auto, extra = "AutoModelForSequenceClassification", [
            f"labels = {labels!r}",
            f"base = AutoModelForSequenceClassification.from_pretrained({base!r}, num_labels=len(labels),",
            "    id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})"]
    else:
        auto, extra = "AutoModelForCausalLM", [f"base = AutoModelForCausalLM.from_pretrained({base!r})"]
    return Usage("peft", ["Adapter over the base model (peft):", "", "```python", "from peft import PeftModel",
                          f"from transformers import {auto}, AutoTokenizer", "", *extra,
                          f"model = PeftModel.from_pretrained(base, {folder!r})",
                          f"tokenizer = AutoTokenizer.from_pretrained({base!r})", "```", ""])


def _has_conv1d(model: nn.Module) -> bool:
    """Whether ``model`` has transformers' ``Conv1D`` layers (GPT-2, GPT-J style: weight stored in x out)."""
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(module, Conv1D) for module in model.modules())


def task_type(task: TaskInfo) -> str:
    """peft's task type for ``task.head``."""
    return TASK_TYPES[task.head]


def model_path(model: nn.Module) -> str:
    """The folder ``model`` was loaded from (for peft options that load its tokenizer)."""
    return str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", ""))


def dropout_saved_elements(model: nn.Module) -> int:
    """Activation elements per token that LoRA-family dropout adds to what backward keeps in peft's
    layers: each LoRA layer with ``lora_dropout`` p > 0 saves its dropped-out input (the input of
    ``lora_A``, ``in_features`` elements) and the dropout mask. lmforge's fused LoRA layers keep only
    a 1-byte mask instead (:func:`dropout_mask_elements`). Summed over the whole model (all layers);
    0 for models without such layers. Works on meta-device models (reads shapes only)."""
    return _dropout_inputs(model, fused=False)


def dropout_mask_elements(model: nn.Module) -> int:
    """Per token, all layers: the 1-byte dropout-mask elements lmforge's fused LoRA layers keep for backward."""
    return _dropout_inputs(model, fused=True)


def _dropout_inputs(model: nn.Module, *, fused: bool) -> int:
    total = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        keeps = getattr(module, "keeps_dropout_input", None)  # only lmforge's fused layer has it
        runs_fused = keeps is not None and not keeps()
        if runs_fused != fused:
            continue
        if any(isinstance(d, nn.Dropout) and d.p > 0 for d in dropouts.values()):
            total += int(getattr(module, "in_features", 0) or 0)
    return total
