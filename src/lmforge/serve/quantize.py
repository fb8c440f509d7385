"""Weight-only int8 linear layers for serving a causal LM (``serve.dtype: int8``, opt-in).

Decoding one token multiplies one activation row by every weight matrix of the model: the step reads all
weights and does two flops per weight byte read in fp32, so the matmul kernels' speed at one row, not the
arithmetic, decides a single stream's tokens/s. Measured on the 2-core AMD EPYC (Zen 5, avx512_bf16) of
benchmarks/RESULTS.md (``benchmarks/decode_kernels.py``), SmolLM2-135M's linear layers for one token took 34.4 ms
in fp32, 17.2 ms with bf16 weights and 6.4 ms with int8 weights through ``torch.ops.aten._weight_int8pack_mm``
(the CPU kernel torch keeps for weight-only int8: int8 weights, activations and per-channel scales in bf16 / fp16
/ fp32). For many rows at once (a prefill) that kernel is slower than a bf16 matmul but not than an fp32 one
(92.9 ms fp32, 28.9 bf16, 36.6 int8 at 32 rows), so prefill stays no slower than the fp32 default.

Quantization: each output channel (weight row) symmetric, ``scale = max|row| / 127``, rounded to nearest (the
same :func:`lmforge.methods.lora.int8.quantize_weight` as the int8 training path); activations are not quantized.
Each weight is off by at most half a step, ``max|row| / 254``, so an output element is off by at most
``sum_k |x_k| * max|row| / 254`` (plus the activation dtype's rounding): the numbers change, which is why this is
opt-in and its quality cost is measured (benchmarks/RESULTS.md), not assumed. Integer weights make it
deterministic: the same prompt gives the same tokens on every run.

Every plain ``nn.Linear`` of the model is replaced (the output projection included, also when its weight is tied
to the input embeddings: the embedding keeps its float weight for the lookup). Embeddings, norms and attention
stay fp32 (``lmforge serve`` loads the model in fp32 first): with fp32 around the int8 layers the single stream
decoded as fast as with bf16 around them (72.7 vs 68.6 tokens/s, measured), and nothing else is emulated on CPUs
without native bf16. On a device without the kernel (CUDA) the layer dequantizes its weight per call: correct,
not fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.methods.lora.int8 import quantize_weight
from lmforge.serve.linears import replace_linears

# The kernel's activations and scales: its bf16 path is the fast one (measured on the Zen 5 EPYC over SmolLM2's
# layers at one row: 1.0 ms per call on average with fp32 activations, 39 us in bf16), so fp32 rows are cast to
# bf16 for it and the result back.
KERNEL_DTYPE = torch.bfloat16
# The kernel's x86 paths walk K in steps of 16 (AVX-512) or 8 (AVX2) bf16 values with aligned vector loads of
# the activation and weight rows: other widths read past the row or fault (measured: in_features 24 and 72
# crashed the process, 32-576 ran), so only multiples of 16 use it, from a 64-byte aligned buffer; any other
# layer dequantizes its weight to bf16 per call (within the same error bound, no speed-up).
KERNEL_K_MULTIPLE = 16
KERNEL_ALIGNMENT = 64


class Int8WeightOnlyLinear(nn.Module):
    """``y = x @ (W_q * scale).T + bias`` with ``W_q`` int8 (out, in), ``scale`` (out,); ``x`` goes through the
    kernel in bf16 and ``y`` comes back in ``x``'s dtype."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q, scale = quantize_weight(linear.weight)
        self.register_buffer("weight_int8", q.contiguous())
        self.register_buffer("scale", scale.to(KERNEL_DTYPE))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.kernel = self.in_features % KERNEL_K_MULTIPLE == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (see class)
        rows = x.reshape(-1, self.in_features)
        if rows.dtype != KERNEL_DTYPE:
            rows = rows.to(KERNEL_DTYPE)
        if self.kernel and rows.device.type == "cpu":
            if not rows.is_contiguous() or rows.data_ptr() % KERNEL_ALIGNMENT:  # the kernel loads aligned rows
                rows = rows.clone(memory_format=torch.contiguous_format)
            out = torch.ops.aten._weight_int8pack_mm(rows, self.weight_int8, self.scale)
        else:
            out = F.linear(rows, self.weight_int8.to(KERNEL_DTYPE) * self.scale[:, None])
        if out.dtype != x.dtype:
            out = out.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


def quantize_linears_int8(model: nn.Module) -> int:
    """Replace every plain ``nn.Linear`` of ``model`` by an :class:`Int8WeightOnlyLinear` in place; returns how
    many. The layers keep the dtype of their inputs."""
    return replace_linears(model, Int8WeightOnlyLinear)
