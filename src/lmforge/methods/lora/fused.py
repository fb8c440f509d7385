"""A LoRA linear layer whose training step runs as one autograd function (fewer passes over activations).

peft's ``lora.Linear`` computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling``: besides the
two thin rank-``r`` matmuls, autograd runs an elementwise multiply and an add over the
``tokens x out`` output in forward, again in backward, and adds the two ``tokens x in`` input
gradients. :class:`FusedLoraLinear` is peft's ``lora.Linear`` (same parameters, state-dict keys,
adapter files, merge/unmerge, disable_adapter) with one change: while training a plain
``nn.Linear`` base with one vanilla adapter it calls :class:`LoraLinearFunction`, which

- without dropout in fp32 multiplies by the merged weight ``W + s * B @ A`` (rebuilt each call,
  ``out x in`` instead of ``tokens x out`` work; its fp32 rounding is ~1e-7 of ``W``), and
- otherwise adds the update with ``addmm`` (the add fused into the thin matmul, the scale on ``B``),
- draws dropout's mask from :mod:`lmforge.methods.lora.dropout` (a hash of the element index, the
  same distribution as ``nn.Dropout``, several times cheaper on CPU) and keeps that 1-byte mask for
  backward instead of a dropped-out copy of the input,

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

from lmforge.methods.lora.dropout import draw_key, keep_mask
from lmforge.methods.lora.int8 import int8_input_grad, int8_linear, quantize_weight


class LoraLinearFunction(torch.autograd.Function):
    """``y = x @ W^T + b + s * (x_lora @ A^T) @ B^T`` with gradients for ``x``, ``A``, ``B``.

    ``x`` (..., in); ``x_lora`` is ``x`` itself, or with ``drop = (p, key)`` ``x`` with the elements
    :func:`lmforge.methods.lora.dropout.keep_mask` does not keep zeroed and the rest scaled by ``1 / (1 - p)``
    (inverted dropout, as ``nn.Dropout``); ``weight`` (out, in)
    and ``bias`` (out,) frozen; ``lora_a`` (r, in), ``lora_b`` (out, r); ``scale`` a float. Runs
    in ``dtype`` (the autocast dtype, else ``x``'s): the matmuls autocast would run, same
    roundings except the merged fp32 path (see the module docstring). ``int8``: the frozen
    weight quantized by :func:`lmforge.methods.lora.int8.quantize_weight`; the base's forward and
    input-gradient products then run in int8 (``runtime.precision: int8``), the LoRA ones in fp32.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scale: float, dtype: torch.dtype,  # noqa: D102
                int8: tuple | None = None, drop: tuple | None = None):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        keep = None if drop is None else keep_mask(x2.numel(), drop[1], drop[0], x2.device).view(x2.shape)
        # the scale goes on the small (out, r) factor, never as an ``alpha=`` of addmm / add: torch.compile's
        # CPU pattern passes rewrite mm + add into addmm and back and drop alpha on the way (measured with torch
        # 2.13 inductor: ``y.add(g @ w, alpha=2.0)`` compiled returned ``y + g @ w``; the upstream report is
        # pytorch/pytorch#167313), which made compiled LoRA training with dropout silently wrong
        w, a, bs = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype) * scale
        bias_c = None if bias is None else bias.to(dtype)
        merged = drop is None and dtype == torch.float32 and int8 is None
        if keep is None:
            xa = x2 @ a.t()  # (N, r)
        else:  # inverted dropout's 1 / (1 - p) applied to the thin (N, r) product, not to x
            xa = ((x2 * keep) @ a.t()).mul_(1.0 / (1.0 - drop[0]))
        if merged:
            y = F.linear(x2, torch.addmm(w, bs, a), bias_c)
        elif int8 is not None:
            y = int8_linear(x2, *int8)
            if bias_c is not None:
                y += bias_c
            y.addmm_(xa, bs.t())
        else:
            y = F.linear(x2, w, bias_c).addmm_(xa, bs.t())
        # x2 (x itself unless cast) and a 1-byte mask, not a dropped-out copy of x
        ctx.save_for_backward(x2, weight, lora_a, lora_b, xa, keep)
        ctx.info = (shape, None if drop is None else drop[0], merged, scale, dtype, x.dtype, int8)
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x2, weight, lora_a, lora_b, xa, keep = ctx.saved_tensors
        shape, p, merged, scale, dtype, x_dtype, int8 = ctx.info
        w, a, bs = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype) * scale
        g = grad.reshape(-1, grad.shape[-1]).to(dtype)
        gb = g @ bs  # (N, r): s * g B
        grad_b = (g.t() @ xa).mul_(scale).to(lora_b.dtype)
        if keep is None:
            grad_a = gb.t() @ x2
        else:  # dropout's 1 / (1 - p) on the thin (N, r) factor
            gb = gb.mul_(1.0 / (1.0 - p))
            grad_a = gb.t() @ (x2 * keep)
        grad_a = grad_a.to(lora_a.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            base = int8_input_grad(g, *int8) if int8 is not None else None
            if merged:
                grad_x = g @ torch.addmm(w, bs, a)
            elif keep is None:
                grad_x = (g @ w if base is None else base).addmm_(gb, a)
            else:  # the LoRA path's input gradient passes through the same mask and scale as its input
                grad_x = g @ w if base is None else base
                grad_x.add_((gb @ a).mul_(keep))
            grad_x = grad_x.view(shape).to(x_dtype)
        return grad_x, None, None, grad_a, grad_b, None, None, None, None


def _peft_linear() -> type:
    from peft.tuners.lora.layer import Linear

    return Linear


class FusedLoraLinear(_peft_linear()):
    """peft's ``lora.Linear`` with :class:`LoraLinearFunction` as the training forward (see module doc)."""

    # (int8 weight, scales) of the frozen base while ``runtime.precision`` is int8, else None: a plain attribute
    # (not a parameter or buffer: state dicts, checkpoints and DDP's buffer broadcast never see it), read as an
    # attribute so that torch.compile guards on it. Read through ``self.__dict__.get`` it was not guarded: a
    # block compiled without int8 was reused once int8 was switched on (tests/unit/train/test_compile.py).
    int8_base: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapter = self._fused_adapter(x, args, kwargs)
        if adapter is None:
            return super().forward(x, *args, **kwargs)
        base = self.base_layer
        dropout = self.lora_dropout[adapter]
        dropping = isinstance(dropout, nn.Dropout) and dropout.training and dropout.p > 0
        drop = (dropout.p, draw_key()) if dropping else None
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        int8 = self.int8_base if dtype == torch.float32 else None
        return LoraLinearFunction.apply(x, base.weight, base.bias, self.lora_A[adapter].weight,
                                        self.lora_B[adapter].weight, float(self.scaling[adapter]), dtype, int8, drop)

    def use_int8_base(self, enabled: bool) -> bool:
        """Run the frozen base's training products in int8 (``runtime.precision: int8``) or not.

        Keeps an int8 copy of the base weight beside the fp32 one (not a parameter or buffer:
        state dicts, checkpoints and adapters are unchanged; evaluation without grad stays fp32).
        Returns whether this layer can (a plain ``nn.Linear`` base with a frozen weight).
        """
        base = self.base_layer
        if not enabled or type(base) is not nn.Linear or base.weight.requires_grad:
            self.int8_base = None
            return False
        self.int8_base = quantize_weight(base.weight)
        return True

    def keeps_dropout_input(self) -> bool:
        """Whether training this layer keeps a dropped-out copy of its input for backward (peft's
        forward does; the fused one keeps a 1-byte mask). For memory estimates; shapes only."""
        return bool(self.lora_variant) or len(self._lora_adapters()) != 1

    def _lora_adapters(self) -> list[str]:
        """The active adapters this layer holds LoRA weights for."""
        return [a for a in self.active_adapters if a in self.lora_A]

    def _fused_adapter(self, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
        """The one adapter the fused path can run, or None (peft's forward runs instead)."""
        if args or kwargs or not torch.is_grad_enabled() or self.disable_adapters or self.merged:
            return None
        active = self._lora_adapters()
        if len(active) != 1 or active[0] in self.lora_variant or getattr(self, "lora_bias", {}).get(active[0]):
            return None
        base = self.base_layer
        if type(base) is not nn.Linear or base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
            return None
        a, b = self.lora_A[active[0]], self.lora_B[active[0]]
        if a.bias is not None or b.bias is not None or not x.is_floating_point():
            return None
        dropout = self.lora_dropout[active[0]]
        if not isinstance(dropout, (nn.Identity, nn.Dropout)) or x.numel() >= 2**31:  # int32 element indices
            return None
        return active[0]


def register_fused_linear(config: Any, model: nn.Module) -> bool:
    """Make peft build :class:`FusedLoraLinear` for ``model``'s ``nn.Linear`` targets; False (nothing
    registered) when some linear layer of ``model`` is a subclass (quantized bases keep peft's layers)."""
    if any(isinstance(m, nn.Linear) and type(m) is not nn.Linear for m in model.modules()):
        return False
    config._register_custom_module({nn.Linear: FusedLoraLinear})
    return True
