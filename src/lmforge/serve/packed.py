"""Linear layers with their weights packed once for oneDNN, for serving a causal LM on CPU.

``F.linear`` on CPU hands a plain row-major weight to the matmul library at every call: a bf16 weight is reordered
into oneDNN's blocked layout each time, and fp32 goes to MKL, whose x86 code path on AMD CPUs is its AVX2 one.
Packing the weight once (``torch.ops.mkldnn._reorder_linear_weight``, the same op torch's own compiler uses when
it freezes a CPU model) and calling oneDNN's linear on it (``torch.ops.mkldnn._linear_pointwise``) removes both.
Measured on the 2-core AMD EPYC (Zen 5) of benchmarks/RESULTS.md, a 3072 x 576 layer: bf16 one row 187 -> 108-122
us, 32 rows 362 -> 189 us, 256 rows 1058 -> 987-1055 us; fp32 one row 447 -> 191-236 us, 256 rows 5128 -> 2096
us. Decoding SmolLM2-135M, one stream: 42 -> 26 ms per token in fp32, 20.7 -> 15.7 with bf16 weights.

The numbers are the same matmul's up to rounding (a different blocking sums in a different order); the layer is
inference-only (no autograd through the packed weight) and its packed tensor is not a parameter (it is not saved,
moved or exposed as ``.weight``), which is why only the server uses it, on a model it loaded itself, without PEFT
adapters (which wrap ``nn.Linear``): :class:`lmforge.serve.store.ModelStore` reloads the plain model before it
adds an adapter at run time.

Where oneDNN cannot pack bf16 (an AVX2-only CPU), a bf16 layer becomes a :class:`WidenedLinear` instead: torch's
bf16 matrix-vector kernel for a few rows, fp32 products of the widened weight for many (see the class).
"""

from __future__ import annotations

import functools
import threading

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.serve.linears import replace_linears


@functools.lru_cache(maxsize=None)
def packing_available(dtype: torch.dtype = torch.float32) -> bool:
    """True where torch was built with oneDNN (x86 and ARM wheels), the packing ops exist and oneDNN packs and
    multiplies ``dtype`` on this CPU. Tried on an 8 x 8 weight rather than inferred: oneDNN refuses bf16 without
    AVX512-BW/VL/DQ or AVX-NE-CONVERT (an AVX2-only CPU such as an AMD EPYC without AVX-512, or any CPU with
    ``ONEDNN_MAX_CPU_ISA=AVX2``), where the layers keep ``F.linear``."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(8, 8, dtype=dtype), 1)
        out = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 8, dtype=dtype), packed, None, "none", [], "")
    except RuntimeError:
        return False
    return bool((out == 8).all())


class PackedLinear(nn.Module):
    """``y = x @ W.T + b`` with ``W`` packed for oneDNN once; ``x`` in the weight's dtype, on CPU."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.dtype = weight.dtype
        # not a buffer: an opaque oneDNN tensor that state_dict, .to() and safetensors cannot take
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (see class)
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.dtype}, packed"


def pack_linears(model: nn.Module) -> int:
    """Replace every plain fp32 / bf16 ``nn.Linear`` of ``model`` on CPU by a :class:`PackedLinear` in place, for
    the dtypes :func:`packing_available` finds packable here; returns how many (0 where none is)."""
    return replace_linears(model, PackedLinear, keep=lambda linear: linear.weight.device.type == "cpu"
                           and linear.weight.dtype in (torch.float32, torch.bfloat16)
                           and packing_available(linear.weight.dtype))


# WidenedLinear: at and above this many rows a bf16 layer that oneDNN cannot pack widens its weight to fp32. Measured
# on the Zen 5 EPYC with torch's kernels and oneDNN held to AVX2 (benchmarks/decode_kernels.py, RESULTS.md), all of
# SmolLM2-135M's linear layers, one forward: 1 row 7.7 ms bf16 (torch's bf16 matrix-vector kernel converts in
# registers and reads half of fp32's bytes) against 19.2 fp32 packed; 8 rows 50.8 bf16, widened about the same;
# 16 rows 98.3 bf16, 76.0 widened; 41 rows 236.4 bf16, 92.1 widened (the widening alone: 12-17 ms).
WIDEN_ROWS = 16
# widen at most this many weight elements at a time (8 MiB of fp32): the scratch stays in the last-level cache and
# an output layer (SmolLM2's 49152 x 576) does not keep a 113 MB fp32 copy around
WIDEN_CHUNK = 1 << 21


class _Scratch(threading.local):
    """One fp32 buffer per thread (the server's decode thread, an encoder request's worker), grown on demand."""

    def __init__(self):
        self.buffer = torch.empty(0)

    def take(self, numel: int) -> torch.Tensor:
        if self.buffer.numel() < numel:
            self.buffer = torch.empty(numel)
        return self.buffer[:numel]


_SCRATCH = _Scratch()


class WidenedLinear(nn.Module):
    """A bf16 ``nn.Linear`` on a CPU whose oneDNN cannot pack bf16 (no AVX512-BW/VL/DQ, no AVX-NE-CONVERT: an
    AVX2-only CPU). There torch multiplies bf16 matrices through a reference loop (a 2048-cube product: 61 s
    against 0.18 s in fp32, see lmforge.hardware) but one row through a fast matrix-vector kernel. So a few rows (a
    decode step) keep ``F.linear`` in bf16, and :data:`WIDEN_ROWS` or more (a prefill, an encoder batch) widen the
    weight to fp32 chunk by chunk in a reused scratch buffer and multiply in fp32.

    Same numbers as the bf16 layer up to rounding: widening bf16 to fp32 is exact, both paths multiply the same
    bf16 values and accumulate in fp32, and the result is rounded to bf16 (it may differ by one bf16 step where
    the two sums, taken in different orders, straddle a rounding boundary)."""

    def __init__(self, linear: nn.Linear, chunk: int = WIDEN_CHUNK):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())
        self.step = max(1, chunk // self.in_features)  # output channels widened at a time

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (see class)
        weight = self.weight
        if x.dtype != weight.dtype:
            x = x.to(weight.dtype)
        if x.numel() < WIDEN_ROWS * self.in_features:
            return F.linear(x, weight, self.bias)
        rows = x.reshape(-1, self.in_features).float()
        parts = []
        for start in range(0, self.out_features, self.step):
            block = weight[start:start + self.step]
            wide = _SCRATCH.take(block.numel()).view(block.shape)
            wide.copy_(block)
            parts.append(rows @ wide.t())
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        if self.bias is not None:
            out += self.bias
        return out.to(weight.dtype).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.weight.dtype}, "
                f"widened to float32 from {WIDEN_ROWS} rows")


def widen_linears(model: nn.Module) -> int:
    """Replace every plain bf16 ``nn.Linear`` of ``model`` on CPU by a :class:`WidenedLinear` in place where oneDNN
    cannot pack bf16 here (elsewhere :func:`pack_linears` packs them); returns how many."""
    if packing_available(torch.bfloat16):
        return 0
    return replace_linears(model, WidenedLinear, keep=lambda linear: linear.weight.device.type == "cpu"
                           and linear.weight.dtype == torch.bfloat16)
