from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lmforge.config.schema import RuntimeConfig, TrainConfig
from lmforge.train.runtime import Runtime, build_runtime, choose_precision, cpu_supports_bf16


def test_cpu_bf16_detection_from_cpuinfo_flags(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert cpu_supports_bf16("flags : fpu sse2 avx512f avx512_bf16 amx_tile")
    assert cpu_supports_bf16("flags : fpu amx_bf16")
    assert not cpu_supports_bf16("flags : fpu sse2 avx2 avx512f")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN held to AVX2: bf16 matmuls fall to a reference path
    assert not cpu_supports_bf16("flags : fpu sse2 avx512f avx512_bf16")
    assert choose_precision("auto", torch.device("cpu")) == "fp32"


def test_precision_choice():
    cpu = torch.device("cpu")
    assert choose_precision("fp32", cpu) == "fp32"
    assert choose_precision("bf16", cpu) == "bf16"
    assert choose_precision("auto", cpu) == ("bf16" if cpu_supports_bf16() else "fp32")


def test_autocast_and_to_device():
    a, b = torch.randn(3, 3), torch.randn(3, 3)
    with Runtime(torch.device("cpu"), "bf16").autocast():
        assert (a @ b).dtype == torch.bfloat16
    with Runtime(torch.device("cpu"), "fp32").autocast():
        assert (a @ b).dtype == torch.float32
    moved = Runtime(torch.device("cpu"), "fp32").to_device({"x": a, "n": 3})
    assert moved["n"] == 3 and moved["x"].device.type == "cpu"


def test_build_runtime_seeds_every_rng():
    cfg = RuntimeConfig(device="cpu", precision="fp32")
    runtime = build_runtime(cfg, seed=3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    build_runtime(cfg, seed=3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    assert runtime.device.type == "cpu" and runtime.precision == "fp32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda_is_a_user_error():
    from lmforge.errors import UserError

    with pytest.raises(UserError, match="CUDA"):
        build_runtime(RuntimeConfig(device="cuda"), seed=0)


def test_cpu_runtime_is_deterministic_without_nan_filling_and_uses_configured_threads():
    """Deterministic algorithms stay on; the NaN fill of new tensors is off (its cost is ~11% of a bf16
    step). Determinism itself is asserted by same-seed / resume bit-identity tests (tests/invariants)."""
    before = torch.get_num_threads()
    try:
        build_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), seed=0)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_prepare_switches_to_packed_attention_and_finish_restores(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from lmforge.model.packed_attention import PACKED_ATTENTION

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa")
    runtime = Runtime(torch.device("cpu"), "fp32")
    assert runtime.prepare(model) is model and model.config._attn_implementation == PACKED_ATTENTION
    runtime.finish(model)
    assert model.config._attn_implementation == "sdpa"
    compiled = Runtime(torch.device("cpu"), "fp32", compile=True)
    assert compiled._attention == {}  # compile keeps sdpa (a per-segment loop would split the graph)


def test_cuda_choices_without_a_gpu(monkeypatch):
    """The CUDA path's device and dtype choices, decided without a GPU: auto picks cuda when present,
    bf16 where the GPU supports it (frozen base then stored in bf16), fp32 otherwise."""
    from lmforge.train.precision import resolve_base_dtype
    from lmforge.train.runtime import choose_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto").type == "cuda"
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision("auto", cuda) == "bf16" and resolve_base_dtype("auto", "bf16") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision("auto", cuda) == "fp32" and resolve_base_dtype("auto", "fp32") == torch.float32
