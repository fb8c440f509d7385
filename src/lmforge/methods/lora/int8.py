"""int8 matmuls for a frozen linear base on CPU (``runtime.precision: int8``): W8A8, dynamic per token.

The frozen weight ``W`` (out, in) is quantized once per output channel (symmetric, scale =
max|row| / 127). Each call quantizes its activations per token the same way and multiplies in
int8 with int32 accumulation (``torch._int_mm``: VNNI / AMX-INT8 kernels through oneDNN, 3-4x the
fp32 matmul rate on an AVX-512 VNNI Xeon), then rescales. The input gradient of backward is the
same kind of product, ``g @ W = (g * s_w) @ W_q`` with ``g * s_w`` quantized per token: a frozen
base needs no weight gradient, so its whole forward and backward run in int8 ("SwitchBack",
Wortsman et al. 2023, arXiv:2304.13013, which keeps only the weight gradient in 16 bits).

Error: each quantized value is off by at most half a step (``max / 254``); a dot product of K
terms therefore carries a relative error of order ``sqrt(K) / 254`` of ``|x| |w|`` at worst and far
less on average (errors of both signs cancel). Integer accumulation is exact where the CPU has VNNI or
AMX-INT8, so results are deterministic and independent of thread count; elsewhere oneDNN's int8 path is not
exact and the runtime refuses ``precision: int8`` (:func:`lmforge.hardware.cpu_int8_matmul_exact`).
"""

from __future__ import annotations

import torch

LEVELS = 127.0


def quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row of a 2-D float tensor: ``(q int8 (N, K), scale float (N, 1))``, ``t ~ q * scale``."""
    scale = t.abs().amax(dim=-1, keepdim=True).float().clamp_(min=1e-12).div_(LEVELS)
    return torch.div(t, scale).round_().to(torch.int8), scale


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A frozen ``(out, in)`` weight -> ``(q int8 (out, in), scale float32 (out,))``."""
    q, scale = quantize_rows(weight.detach().float())
    return q, scale.squeeze(1)


def int8_linear(x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """``x (N, in) @ W.T`` in int8 -> float32 (N, out)."""
    xq, x_scale = quantize_rows(x)
    return torch._int_mm(xq, wq.t()).to(torch.float32).mul_(x_scale).mul_(w_scale)


def int8_input_grad(grad: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """``grad (N, out) @ W`` in int8 -> float32 (N, in) (the weight's scales folded into ``grad`` first)."""
    gq, g_scale = quantize_rows(grad.float() * w_scale)
    return torch._int_mm(gq, wq).to(torch.float32).mul_(g_scale)
