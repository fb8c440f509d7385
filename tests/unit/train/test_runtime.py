from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lmforge.config.schema import TrainConfig
from lmforge.train.runtime import Runtime, build_runtime, choose_precision, cpu_supports_bf16


def test_cpu_bf16_detection_from_cpuinfo_flags():
    assert cpu_supports_bf16("flags : fpu sse2 avx512f avx512_bf16 amx_tile")
    assert cpu_supports_bf16("flags : fpu amx_bf16")
    assert not cpu_supports_bf16("flags : fpu sse2 avx2 avx512f")


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
    cfg = TrainConfig(device="cpu", precision="fp32")
    runtime = build_runtime(cfg, seed=3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    build_runtime(cfg, seed=3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    assert runtime.device.type == "cpu" and runtime.precision == "fp32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda_is_a_user_error():
    from lmforge.errors import UserError

    with pytest.raises(UserError, match="CUDA"):
        build_runtime(TrainConfig(device="cuda"), seed=0)
