"""QLoRA: LoRA (through peft) over a base whose linear layers were quantized at load time.

- ``load_kwargs`` hands ``from_pretrained`` a ``BitsAndBytesConfig`` (4-bit NF4/FP4 with optional
  double quantization, or 8-bit) or, with ``backend: torchao``, a ``TorchAoConfig`` (int8 /
  int4 weight-only, see ``torchao_base``); the output / task heads stay in full precision.
- ``apply`` / ``load`` first apply :func:`lmforge.compat.bnb.keep_4bit_weights_trainable` (a CPU
  bug in bitsandbytes breaks gradients after an eval pass otherwise), then inject LoRA.
- ``save`` writes a plain peft adapter folder (load it over the same quantized base).
- ``merge`` cannot fold a float update into 4-bit weights without re-quantizing (lossy), so it
  dequantizes the base into plain ``nn.Linear`` layers first and merges there: the merged model
  is full precision (the compute dtype), and says so in the log (``spec.extras["merge_note"]``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmforge.compat.bnb import keep_4bit_weights_trainable
from lmforge.errors import UserError
from lmforge.methods.base import MethodBase, Usage
from lmforge.methods.lora.method import lora_config
from lmforge.methods.peft_wrap import AdapterDisabled, peft_usage
from lmforge.methods.qlora.config import QloraParams
from lmforge.methods.qlora.torchao_base import dequantize_torchao_linears, is_torchao_linear, torchao_quantization_config
from lmforge.model.task import TaskInfo

log = logging.getLogger("lmforge")

# Heads that must stay trainable full-precision layers (never quantized).
SKIP_MODULES = ["lm_head", "classifier", "score"]


def compute_dtype(name: str) -> torch.dtype:
    """``auto``: bfloat16 on a CUDA device that supports it, else float32."""
    if name == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return getattr(torch, name)


def quantization_config(params: QloraParams) -> Any:
    """The ``transformers.BitsAndBytesConfig`` (or ``TorchAoConfig``) for ``params``."""
    from transformers import BitsAndBytesConfig

    if params.backend == "torchao":
        return torchao_quantization_config(params.bits, params.group_size, SKIP_MODULES)
    if params.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=SKIP_MODULES)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=params.quant_type,
        bnb_4bit_use_double_quant=params.double_quant,
        bnb_4bit_compute_dtype=compute_dtype(params.compute_dtype),
        llm_int8_skip_modules=SKIP_MODULES,
    )


def quantized_linears(model: nn.Module) -> list[str]:
    """Names of the quantized linear layers (bitsandbytes 4/8-bit, torchao) inside ``model``."""
    import bitsandbytes as bnb

    kinds = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    return [name for name, module in model.named_modules() if isinstance(module, kinds) or is_torchao_linear(module)]


class QloraMethod(MethodBase):
    """LoRA over a quantized base (bitsandbytes / torchao); merges into a dequantized full-precision model."""

    params: QloraParams

    def load_kwargs(self) -> dict[str, Any]:
        """``quantization_config`` for ``from_pretrained`` (non-quantized layers keep model.dtype)."""
        return {"quantization_config": quantization_config(self.params)}

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """Prepare the quantized ``model`` and wrap it in a trainable ``PeftModel`` (LoRA only trains)."""
        from peft import get_peft_model

        self._prepare(model)
        try:
            return get_peft_model(model, lora_config(self.params, task))
        except ValueError as exc:  # target_modules matching nothing in this model
            raise UserError(
                f"method 'qlora' cannot be applied to this model: {exc}",
                where="method.target_modules",
                hint="use target_modules: all-linear, or names of linear layers in the model (e.g. q_proj, v_proj)",
            ) from exc

    def apply_on_meta(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """For ``lmforge estimate``: LoRA injected into an unquantized meta-device base (no weights to
        quantize there). The trainable parameters are exactly those :meth:`apply` creates; the
        estimator counts the frozen base at ``params.bits``."""
        from peft import get_peft_model

        return get_peft_model(model, lora_config(self.params, task))

    def _prepare(self, model: nn.Module) -> None:
        """Check the base is quantized, apply the CPU workaround, freeze and upcast the rest."""
        from peft import prepare_model_for_kbit_training

        if not quantized_linears(model):
            if any(isinstance(m, nn.Linear) for m in model.modules()):
                raise RuntimeError("qlora needs the base loaded with method.load_kwargs() (its quantization_config)")
            raise UserError(
                "method 'qlora' found no linear layer to quantize in this model",
                where="method.name",
                hint="QLoRA quantizes nn.Linear layers; use method lora or full for this model",
            )
        keep_4bit_weights_trainable(model)
        # No activation checkpointing here: the training loop owns that choice.
        prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """peft ``save_pretrained``: adapter_config.json + adapter_model.safetensors."""
        model.save_pretrained(str(out_dir))

    def load(self, base: nn.Module, in_dir: Path, task: TaskInfo) -> nn.Module:
        """Load the adapter over a freshly loaded quantized ``base`` (``load_kwargs``) for inference."""
        from peft import PeftModel

        self._prepare(base)
        return PeftModel.from_pretrained(base, str(in_dir), is_trainable=False)

    def merge(self, model: nn.Module) -> nn.Module:
        """Dequantize the base, then fold LoRA in; returns a plain full-precision transformers model.

        ``model`` (a PeftModel over a quantized base) is consumed: its layers are replaced.
        """
        from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

        config = model.peft_config[model.active_adapter]
        weights = get_peft_model_state_dict(model)
        base = model.unload()
        dtype = compute_dtype(self.params.compute_dtype)
        count = len(quantized_linears(base))
        if self.params.backend == "torchao":
            dequantize_torchao_linears(base, dtype)
        else:
            base = base.dequantize(dtype=dtype)  # transformers' public API: bnb layers -> nn.Linear
        plain = get_peft_model(base, config)
        set_peft_model_state_dict(plain, weights)
        merged = plain.merge_and_unload()
        log.warning("qlora: dequantized %d %d-bit layers to %s and merged LoRA there; the exported model is %s, "
                    "not %d-bit", count, self.params.bits, dtype, dtype, self.params.bits)
        return merged.eval()

    def reference(self, model: nn.Module) -> AdapterDisabled:
        """The quantized base with LoRA switched off (no second copy)."""
        return AdapterDisabled()

    def usage(self, folder: str, base: str, task: TaskInfo) -> Usage:
        return peft_usage(folder, base, task)
