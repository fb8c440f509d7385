"""Storage dtypes while training: frozen weights in bf16, trainable weights as fp32 master weights.

Under bf16 autocast every matmul runs in bfloat16 anyway, so a frozen base kept in fp32 is cast to
bf16 on every forward (and twice the memory is held for it). :func:`cast_for_training` stores the
frozen floating-point parameters in ``base_dtype`` once, and keeps (or makes) every trainable
parameter fp32, so the optimizer state is fp32 too. :func:`restore_dtypes` undoes it after
training: the frozen weights come back to their original dtype holding the bf16-rounded values
the adapter was trained against (so evaluation, merging and export see exactly the trained model).
"""

from __future__ import annotations

import torch
from torch import nn

from lmforge.errors import UserError

BASE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_base_dtype(requested: str, precision: str) -> torch.dtype:
    """``runtime.memory.base_dtype`` -> the storage dtype of frozen weights.

    "auto": bfloat16 when the compute ``precision`` is "bf16", else float32. "bfloat16" needs
    bf16 compute (mixed-dtype layers run only under autocast): UserError with fp32.
    """
    if requested == "auto":
        return torch.bfloat16 if precision == "bf16" else torch.float32
    if requested == "bfloat16" and precision != "bf16":
        raise UserError("runtime.memory.base_dtype bfloat16 needs bf16 compute, but precision resolved to fp32",
                        where="runtime.memory.base_dtype",
                        hint="set runtime.precision: bf16, or base_dtype: auto / float32")
    return BASE_DTYPES[requested]


def cast_for_training(model: nn.Module, base_dtype: torch.dtype) -> dict[nn.Parameter, torch.dtype]:
    """Frozen fp32 parameters -> ``base_dtype``; trainable floating parameters -> fp32 (in place).

    Quantized (integer) weights and frozen weights already stored in another dtype (e.g. a bf16
    load) are left alone. Tied parameters are one object and are cast once. Returns the original
    dtype of every parameter changed, for :func:`restore_dtypes`.
    """
    changed: dict[nn.Parameter, torch.dtype] = {}
    for param in _unique_parameters(model):
        if not param.is_floating_point():
            continue
        if param.requires_grad:
            target = torch.float32
        elif param.dtype == torch.float32:
            target = base_dtype
        else:
            continue
        if param.dtype != target:
            changed[param] = param.dtype
            param.data = param.data.to(target)
    return changed


def restore_dtypes(changed: dict[nn.Parameter, torch.dtype]) -> None:
    """Cast every parameter of ``changed`` (from :func:`cast_for_training`) back to its dtype."""
    for param, dtype in changed.items():
        param.data = param.data.to(dtype)


def storage_summary(model: nn.Module) -> dict[str, dict[str, int]]:
    """``{"trainable" | "frozen": {dtype name: element count}}`` (what a test or log can check)."""
    out: dict[str, dict[str, int]] = {"trainable": {}, "frozen": {}}
    for param in _unique_parameters(model):
        side = out["trainable" if param.requires_grad else "frozen"]
        name = str(param.dtype).removeprefix("torch.")
        side[name] = side.get(name, 0) + param.numel()
    return out


def _unique_parameters(model: nn.Module) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for param in model.parameters():  # parameters() already skips duplicates; be explicit anyway
        seen.setdefault(id(param), param)
    return list(seen.values())
