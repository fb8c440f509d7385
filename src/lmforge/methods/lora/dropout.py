"""LoRA dropout masks from a counter-based hash: ``nn.Dropout``'s distribution at a fraction of its CPU cost.

``nn.Dropout`` on CPU draws one Bernoulli number per element from the Mersenne Twister in a serial loop
(2.5-4.4 ms for a 1024 x 576 input on the 2-core Zen 5 EPYC of benchmarks/RESULTS.md, more than that LoRA
layer's base matmul; 14% of the training phase of ``make demo``, ``dropout: 0.05``, in a profile on the AVX2
proxy there). :func:`keep_mask` instead hashes each element's index with a per-call key: ``h =
fmix32(a * i + b)`` (MurmurHash3's 32-bit finalizer, a bijection with full avalanche; ``a`` odd and
``b`` drawn from torch's default generator, so ``run.seed`` and a resumed run's generator state fix
every mask) and keeps element ``i`` iff ``h``, read as a signed int32, is below ``round((1 - p) *
2**32) - 2**31``: a keep probability within 2**-33 of ``1 - p`` (torch's float Bernoulli: within
2**-25). About fifteen whole-tensor int32 operations, vectorised and threaded, instead of a serial
generator; the mask comes out as 0/1 bytes, which multiply a float tensor 3-4x faster than
``masked_fill`` or ``where`` take a bool one (measured on the Zen 5 EPYC).

Exactness: every step is int32 arithmetic modulo 2**32 (wrapping multiply; the logical right shift
written as an arithmetic shift and a mask), the same bits on every CPU and GPU;
:func:`reference_keep` is the same function on Python integers, which the tests compare against.
"""

from __future__ import annotations

import torch

_C1, _C2 = 0x85EBCA6B, 0xC2B2AE35  # MurmurHash3 fmix32 multipliers
_ODD = torch.tensor([1, 0], dtype=torch.int32)  # sets the multiplier's lowest bit


def _int32(value: int) -> int:
    """``value`` modulo 2**32 as a signed int32 (the scalar torch multiplies an int32 tensor by)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


@torch.compiler.disable
def draw_key(generator: torch.Generator | None = None) -> torch.Tensor:
    """A mask key: int32 ``[a, b]`` (``a`` odd) from torch's default CPU generator (seeded by ``run.seed``;
    checkpointed). A tensor, not Python ints, so that ``torch.compile`` (``runtime.compile``) traces the
    hash with the key as an input instead of specialising on, or mistyping, its values.

    Outside the compiled graph (``torch.compiler.disable``, a graph break per LoRA layer call): inside it,
    inductor's scheduler ordered the layers' independent ``randint`` calls its own way, so each layer got
    another layer's key (measured: a compiled block with three LoRA layers used the eager run's keys rotated
    by one). Still valid dropout, but not the eager masks; drawn here, in program order, the keys and so the
    masks are the same compiled or not (tests/unit/train/test_compile.py)."""
    return torch.randint(0, 2**31, (2,), dtype=torch.int32, generator=generator).bitwise_or_(_ODD)


def keep_threshold(p: float) -> int:
    """An element is kept iff its hash, as a signed int32, is below this (``0 < p < 1``; p ~ 0 keeps all
    but hash value 2**31 - 1, probability 2**-32)."""
    return min(round((1.0 - p) * 2**32) - 2**31, 2**31 - 1)


def _shr(v: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int32 ``v`` (torch's ``>>`` on int32 is arithmetic)."""
    return (v >> bits).bitwise_and_((1 << (32 - bits)) - 1)


def keep_mask(numel: int, key: torch.Tensor, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 ``(numel,)``: 1 where dropout with probability ``p`` keeps the element under ``key``, else 0."""
    v = torch.arange(numel, dtype=torch.int32, device=device)
    v.mul_(key[0]).add_(key[1])
    v.bitwise_xor_(_shr(v, 16)).mul_(_int32(_C1))
    v.bitwise_xor_(_shr(v, 13)).mul_(_int32(_C2))
    v.bitwise_xor_(_shr(v, 16))
    return (v < keep_threshold(p)).view(torch.uint8)  # a bool's byte is 0 or 1


def reference_keep(indices: list[int], key: tuple[int, int], p: float) -> list[int]:
    """:func:`keep_mask` at ``indices`` on Python integers (the specification the tests check against);
    ``key`` as ``draw_key().tolist()``."""
    a, b = key[0] & 0xFFFFFFFF, key[1] & 0xFFFFFFFF
    out = []
    for i in indices:
        h = (a * i + b) & 0xFFFFFFFF
        h ^= h >> 16
        h = (h * _C1) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * _C2) & 0xFFFFFFFF
        h ^= h >> 16
        out.append(int(_int32(h) < keep_threshold(p)))
    return out
