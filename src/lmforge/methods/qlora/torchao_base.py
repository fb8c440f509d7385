"""The torchao backend of qlora: int8 / int4 weight-only base layers (CPU-checked configs only).

On CPU (torchao 0.18, torch 2.13) ``Int8WeightOnlyConfig`` and ``IntxWeightOnlyConfig(int4,
PerGroup(group_size))`` train with LoRA; ``Int4WeightOnlyConfig`` needs a CUDA-only package and
``Int8DynamicActivationInt8WeightConfig`` passes no gradient, so neither is offered.
torchao is optional: without it, choosing this backend is a UserError naming the pin.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lmforge.errors import UserError

PIN = "torchao==0.18.0"


def torchao_quantization_config(bits: int, group_size: int, skip: list[str]) -> Any:
    """``transformers.TorchAoConfig`` for int8 (per channel) or int4 (per group) weight-only."""
    try:
        from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
        from torchao.quantization.granularity import PerGroup
    except ImportError as exc:
        raise UserError("method.backend 'torchao' needs the torchao package", where="method.backend",
                        hint=f"pip install {PIN}, or use backend: bitsandbytes") from exc
    from transformers import TorchAoConfig

    if bits == 8:
        quant = Int8WeightOnlyConfig()
    else:
        quant = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))
    return TorchAoConfig(quant_type=quant, modules_to_not_convert=skip)


def is_torchao_linear(module: nn.Module) -> bool:
    """An ``nn.Linear`` whose weight is a torchao quantized tensor subclass."""
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.Linear) and type(weight).__module__.startswith("torchao.")


def dequantize_torchao_linears(model: nn.Module, dtype: torch.dtype) -> int:
    """Swap every torchao-quantized weight for a plain frozen parameter of ``dtype``; returns the count.

    transformers has no ``dequantize`` for torchao, so the model's quantization markers are
    removed here too (``save_pretrained`` then writes plain weights).
    """
    count = 0
    for module in model.modules():
        if is_torchao_linear(module):
            plain = module.weight.dequantize().detach().to(dtype)
            module.weight = nn.Parameter(plain, requires_grad=False)
            count += 1
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    return count
