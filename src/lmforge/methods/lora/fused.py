"""A LoRA linear layer whose training step runs as one autograd function (fewer passes over activations).

peft's ``lora.Linear`` computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling``: besides the
two thin rank-``r`` matmuls, autograd runs an elementwise multiply and an add over the
``tokens x out`` output in forward, again in backward, and adds the two ``tokens x in`` input
gradients. :class:`FusedLoraLinear` is peft's ``lora.Linear`` (same parameters, state-dict keys,
adapter files, merge/unmerge, disable_adapter) with one change: while training a plain
``nn.Linear`` base with one vanilla adapter it calls :class:`LoraLinearFunction`, which

- without dropout in fp32 multiplies by the merged weight ``W + s * B @ A`` (rebuilt each call,
  ``out x in`` instead of ``tokens x out`` work; its fp32 rounding is ~1e-7 of ``W``), and
- otherwise adds the update with ``addmm`` (scale and add fused into the thin matmul),

and computes the input and LoRA gradients itself (``g @ W'``; ``s * g^T @ (x A^T)``; ``s * (g B)^T
@ x``). Anything else (evaluation without grad, merged or disabled adapters, several adapters,
DoRA and other variants, a trainable base weight or bias, quantized bases) runs peft's forward.
With ``runtime.precision: int8`` the runtime calls :meth:`FusedLoraLinear.use_int8_base` and the
base's products run in int8 (:mod:`lmforge.methods.lora.int8`).

Registered through peft's documented custom-module API (``LoraConfig._register_custom_module``,
"Custom models" in the peft docs, marked experimental there), only for models whose targets are
plain ``nn.Linear`` layers; the saved adapter is an ordinary peft adapter.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.methods.lora.int8 import int8_input_grad, int8_linear, quantize_weight


class LoraLinearFunction(torch.autograd.Function):
    """``y = x @ W^T + b + s * (x_lora @ A^T) @ B^T`` with gradients for ``x``, ``x_lora``, ``A``, ``B``.

    ``x`` (..., in); ``x_lora`` is ``x`` itself (no dropout) or ``dropout(x)``; ``weight`` (out, in)
    and ``bias`` (out,) frozen; ``lora_a`` (r, in), ``lora_b`` (out, r); ``scale`` a float. Runs
    in ``dtype`` (the autocast dtype, else ``x``'s): the matmuls autocast would run, same
    roundings except the merged fp32 path (see the module docstring). ``int8``: the frozen
    weight quantized by :func:`lmforge.methods.lora.int8.quantize_weight`; the base's forward and
    input-gradient products then run in int8 (``runtime.precision: int8``), the LoRA ones in fp32.
    """

    @staticmethod
    def forward(ctx, x, x_lora, weight, bias, lora_a, lora_b, scale: float, dtype: torch.dtype,  # noqa: D102
                int8: tuple | None = None):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        same = x_lora is x
        xl2 = x2 if same else x_lora.reshape(-1, shape[-1]).to(dtype)
        w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        bias_c = None if bias is None else bias.to(dtype)
        merged = same and dtype == torch.float32 and int8 is None
        xa = xl2 @ a.t()  # (N, r)
        if merged:
            y = F.linear(x2, torch.addmm(w, b, a, alpha=scale), bias_c)
        elif int8 is not None:
            y = int8_linear(x2, *int8)
            if bias_c is not None:
                y += bias_c
            y.addmm_(xa, b.t(), alpha=scale)
        else:
            y = F.linear(x2, w, bias_c).addmm_(xa, b.t(), alpha=scale)
        ctx.save_for_backward(xl2, weight, lora_a, lora_b, xa)
        ctx.info = (shape, same, merged, scale, dtype, x.dtype, x_lora.dtype, int8)
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        xl2, weight, lora_a, lora_b, xa = ctx.saved_tensors
        shape, same, merged, scale, dtype, x_dtype, xl_dtype, int8 = ctx.info
        w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        g = grad.reshape(-1, grad.shape[-1]).to(dtype)
        gb = g @ b  # (N, r)
        grad_b = (g.t() @ xa).mul_(scale).to(lora_b.dtype)
        grad_a = (gb.t() @ xl2).mul_(scale).to(lora_a.dtype)
        grad_x = grad_xl = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            base = int8_input_grad(g, *int8) if int8 is not None else None
            if merged:
                grad_x = g @ torch.addmm(w, b, a, alpha=scale)
            elif same:
                grad_x = (g @ w if base is None else base).addmm_(gb, a, alpha=scale)
            else:
                grad_x = g @ w if base is None else base
                grad_xl = (gb @ a).mul_(scale).view(shape).to(xl_dtype)
            grad_x = grad_x.view(shape).to(x_dtype)
        return grad_x, grad_xl, None, None, grad_a, grad_b, None, None, None


def _peft_linear() -> type:
    from peft.tuners.lora.layer import Linear

    return Linear


class FusedLoraLinear(_peft_linear()):
    """peft's ``lora.Linear`` with :class:`LoraLinearFunction` as the training forward (see module doc)."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapter = self._fused_adapter(x, args, kwargs)
        if adapter is None:
            return super().forward(x, *args, **kwargs)
        base = self.base_layer
        dropout = self.lora_dropout[adapter]
        x_lora = x if isinstance(dropout, nn.Identity) else dropout(x)
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        int8 = self.__dict__.get("_int8_base") if dtype == torch.float32 else None
        return LoraLinearFunction.apply(x, x_lora, base.weight, base.bias, self.lora_A[adapter].weight,
                                        self.lora_B[adapter].weight, float(self.scaling[adapter]), dtype, int8)

    def use_int8_base(self, enabled: bool) -> bool:
        """Run the frozen base's training products in int8 (``runtime.precision: int8``) or not.

        Keeps an int8 copy of the base weight beside the fp32 one (not a parameter or buffer:
        state dicts, checkpoints and adapters are unchanged; evaluation without grad stays fp32).
        Returns whether this layer can (a plain ``nn.Linear`` base with a frozen weight).
        """
        base = self.base_layer
        if not enabled or type(base) is not nn.Linear or base.weight.requires_grad:
            self.__dict__.pop("_int8_base", None)
            return False
        self.__dict__["_int8_base"] = quantize_weight(base.weight)
        return True

    def _fused_adapter(self, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
        """The one adapter the fused path can run, or None (peft's forward runs instead)."""
        if args or kwargs or not torch.is_grad_enabled() or self.disable_adapters or self.merged:
            return None
        active = [a for a in self.active_adapters if a in self.lora_A]
        if len(active) != 1 or active[0] in self.lora_variant or getattr(self, "lora_bias", {}).get(active[0]):
            return None
        base = self.base_layer
        if type(base) is not nn.Linear or base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
            return None
        a, b = self.lora_A[active[0]], self.lora_B[active[0]]
        if a.bias is not None or b.bias is not None or not x.is_floating_point():
            return None
        return active[0]


def register_fused_linear(config: Any, model: nn.Module) -> bool:
    """Make peft build :class:`FusedLoraLinear` for ``model``'s ``nn.Linear`` targets; False (nothing
    registered) when some linear layer of ``model`` is a subclass (quantized bases keep peft's layers)."""
    if any(isinstance(m, nn.Linear) and type(m) is not nn.Linear for m in model.modules()):
        return False
    config._register_custom_module({nn.Linear: FusedLoraLinear})
    return True
