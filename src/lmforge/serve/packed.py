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
"""

from __future__ import annotations

import functools

import torch
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
