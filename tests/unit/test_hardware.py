from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from lmforge.hardware import cpu_flags, cpu_has_amx, cpu_has_native_bf16, onednn_isa_cap
from lmforge.model.decode import native_bf16

ZEN5 = "flags : fpu sse2 avx2 fma avx512f avx512bw avx512_vnni avx512_bf16"
SAPPHIRE = "flags : fpu avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8"
ZEN3 = "flags : fpu sse2 avx2 fma"


def test_flags_decide_without_a_cap():
    assert cpu_has_native_bf16(ZEN5, environ={}) and not cpu_has_amx(ZEN5, environ={})
    assert cpu_has_native_bf16(SAPPHIRE, environ={}) and cpu_has_amx(SAPPHIRE, environ={})
    assert not cpu_has_native_bf16(ZEN3, environ={}) and not cpu_has_amx(ZEN3, environ={})


def test_a_onednn_cap_below_bf16_turns_native_bf16_off():
    for cap in ("AVX2", "avx2", " avx512_core_vnni ", "SSE41", "AVX512_CORE"):
        assert not cpu_has_native_bf16(ZEN5, environ={"ONEDNN_MAX_CPU_ISA": cap}), cap
        assert not cpu_has_native_bf16(SAPPHIRE, environ={"DNNL_MAX_CPU_ISA": cap}), cap  # oneDNN's older name
    # a cap that keeps bf16 dot products but not AMX
    assert cpu_has_native_bf16(SAPPHIRE, environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    assert not cpu_has_amx(SAPPHIRE, environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    # caps at or above AMX, or an empty value, change nothing; a cap never adds what the flags lack
    for cap in ("AVX512_CORE_AMX", "ALL", ""):
        assert cpu_has_amx(SAPPHIRE, environ={"ONEDNN_MAX_CPU_ISA": cap})
        assert not cpu_has_native_bf16(ZEN3, environ={"ONEDNN_MAX_CPU_ISA": cap})
    assert onednn_isa_cap({}) is None and onednn_isa_cap({"ONEDNN_MAX_CPU_ISA": " "}) is None
    assert onednn_isa_cap({"DNNL_MAX_CPU_ISA": "avx2"}) == "AVX2"


def test_this_machine_and_the_environment(monkeypatch):
    flags = cpu_flags()
    assert "fpu" in flags or not flags  # /proc/cpuinfo read (or absent off Linux)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not cpu_has_native_bf16() and not native_bf16(torch.device("cpu"))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


AVX2_PROBE = """
import json, torch
from torch import nn
from lmforge.hardware import cpu_has_native_bf16, cpu_int8_matmul_exact
from lmforge.serve.packed import pack_linears, packing_available, widen_linears
from lmforge.train.runtime import choose_precision
g = torch.Generator().manual_seed(1)
a = torch.randint(-127, 128, (96, 512), dtype=torch.int8, generator=g)
b = torch.randint(-127, 128, (512, 80), dtype=torch.int8, generator=g)
model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8).bfloat16())
w, bias = model[1].weight.double(), model[1].bias.double()
packed = pack_linears(model)
widened = widen_linears(model)
x = torch.randn(20, 8)  # 20 rows: a widened bf16 layer multiplies in fp32
h = model[0](x).bfloat16()
y = model[1](h)  # the unpacked bf16 layer still computes: exact products, an fp32 sum of 8, rounded to bf16
exact = h.double() @ w.t() + bias
close = bool(((y.double() - exact).abs() <= 2 ** -8 * exact.abs() + 1e-5 * (h.double().abs() @ w.abs().t() + 1)).all())
print(json.dumps({"native_bf16": cpu_has_native_bf16(), "auto": choose_precision("auto", torch.device("cpu")),
                  "pack_fp32": packing_available(torch.float32), "pack_bf16": packing_available(torch.bfloat16),
                  "packed": packed, "widened": widened, "bf16_ok": close,
                  "int8_probe": cpu_int8_matmul_exact(), "int8_big": bool(torch.equal(torch._int_mm(a, b), a.int() @ b.int()))}))
"""


def test_an_avx2_only_cpu_gets_fp32_and_keeps_working():
    """With torch's kernels and oneDNN held to AVX2 (what an AMD EPYC without AVX-512 runs): auto precision is fp32
    whatever the flags, bf16 layers stay unpacked (widened to fp32 for many rows) and still compute, and the int8
    exactness probe agrees with a larger product (so int8 training is refused exactly where its products would be off)."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", AVX2_PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["native_bf16"] is False and got["auto"] == "fp32"
    assert got["pack_fp32"] is True and got["packed"] == 1 + got["pack_bf16"] and got["bf16_ok"]
    assert got["widened"] == 1 - got["pack_bf16"]  # the bf16 layer oneDNN does not pack is widened for many rows
    # oneDNN packs bf16 with AVX512-BW/VL/DQ (held off here) or AVX-NE-CONVERT (newer Intel cores only)
    assert got["pack_bf16"] is False or "avx_ne_convert" in cpu_flags()
    assert got["int8_probe"] == got["int8_big"]
