"""What the CPU's matmul kernels can do here: native bf16 dot products, AMX.

One place for the question every stage asks (training's ``precision: auto``, the decode precision,
the server's ``dtype: auto``, the estimator's utilization table): the CPU flags in ``/proc/cpuinfo``
(``avx512_bf16``, ``amx_bf16``; plus AMX when torch reports it), held to what oneDNN, which runs
torch's bf16 matmuls on x86, is allowed to use. ``ONEDNN_MAX_CPU_ISA`` (or its older name
``DNNL_MAX_CPU_ISA``) caps oneDNN's instruction set: under ``AVX2`` a bf16 matmul falls to a
reference path (measured on an AMD EPYC with ``avx512_bf16``, one thread: a 2048 x 2048 x 2048 bf16 matmul
61 s, fp32 0.18 s), so bf16 is not native there whatever the flags say.

No torch import at module level.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

# oneDNN ISA caps (its documented ONEDNN_MAX_CPU_ISA values) under which it has no bf16 dot products / no AMX
_NO_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})
_NO_AMX = _NO_BF16 | {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"}


def onednn_isa_cap(environ: Mapping[str, str] | None = None) -> str | None:
    """The instruction-set cap given to oneDNN through the environment, upper-cased; None when unset."""
    env = os.environ if environ is None else environ
    value = env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value and value.strip() else None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The words of ``cpuinfo``; by default this machine's /proc/cpuinfo, plus ``amx_bf16`` when torch reports
    AMX (a hypervisor can hide the flag from /proc/cpuinfo while torch's own probe sees it)."""
    if cpuinfo is not None:
        return frozenset(cpuinfo.split())
    return _machine_flags()


@functools.lru_cache(maxsize=1)
def _machine_flags() -> frozenset[str]:
    import torch

    flags = {"amx_bf16"} if "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper() else set()
    try:
        return frozenset(flags | set(Path("/proc/cpuinfo").read_text().split()))
    except OSError:
        return frozenset(flags)


def cpu_has_native_bf16(cpuinfo: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """bf16 matmuls in hardware: ``amx_bf16`` or ``avx512_bf16`` among the flags, and oneDNN not capped below them."""
    if onednn_isa_cap(environ) in _NO_BF16:
        return False
    return bool(cpu_flags(cpuinfo) & {"amx_bf16", "avx512_bf16"})


def cpu_has_amx(cpuinfo: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """``amx_bf16`` among the flags, and oneDNN not capped below AMX."""
    if onednn_isa_cap(environ) in _NO_AMX:
        return False
    return "amx_bf16" in cpu_flags(cpuinfo)


@functools.lru_cache(maxsize=1)
def cpu_int8_matmul_exact() -> bool:
    """Whether ``torch._int_mm`` (oneDNN's int8 matmul, used by ``runtime.precision: int8``) sums int8 products
    exactly in int32 here. Tried on a fixed random 64 x 256 x 64 product rather than inferred from flags: with VNNI
    or AMX-INT8 it is exact; with oneDNN held to AVX2 (no VNNI) on the Zen 5 EPYC the same product was off by up
    to 74296 (~2% of the sums' scale), and int8 training products by 4-5% instead of ~1%."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-127, 128, (64, 256), dtype=torch.int8, generator=gen)
    b = torch.randint(-127, 128, (256, 64), dtype=torch.int8, generator=gen)
    try:
        got = torch._int_mm(a, b)
    except RuntimeError:
        return False
    return bool(torch.equal(got, a.int() @ b.int()))
