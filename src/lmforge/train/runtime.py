"""The runtime: device, precision, seeding and threads behind one narrow object.

The training loop calls only :class:`Runtime` (``prepare``, ``autocast``, ``to_device``); no
device or precision branch lives in the loop. Models keep fp32 master weights; bf16 runs the
forward under ``torch.autocast``.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

import numpy as np
import torch
from torch import nn

from lmforge.config.schema import TrainConfig


@dataclass(frozen=True)
class Runtime:
    """Where and in which precision the loop runs.

    device: the torch device batches and the model live on.
    precision: "bf16" (autocast to bfloat16) or "fp32".
    """

    device: torch.device
    precision: str

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (in place) and return it."""
        return model.to(self.device)

    def autocast(self) -> ContextManager:
        """``torch.autocast`` to bfloat16 under bf16, else a null context."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Tensors of ``batch`` moved to the device; other values unchanged."""
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def build_runtime(train_cfg: TrainConfig, seed: int) -> Runtime:
    """Resolve device / precision, set threads, seed every RNG; deterministic kernels on CPU."""
    device = choose_device(train_cfg.device)
    if train_cfg.threads is not None:
        torch.set_num_threads(train_cfg.threads)
    seed_everything(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    return Runtime(device=device, precision=choose_precision(train_cfg.precision, device))


def choose_device(requested: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without CUDA raises a UserError."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        from lmforge.errors import UserError

        raise UserError("CUDA is not available on this machine", where="train.device", hint="use device: auto or cpu")
    return torch.device(requested)


def choose_precision(requested: str, device: torch.device) -> str:
    """"auto" -> "bf16" where bf16 matmuls are native (bf16 GPU, AMX/AVX512-BF16 CPU), else "fp32"."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AMX or AVX512-BF16 (torch capability or /proc/cpuinfo flags)."""
    if cpuinfo is None:
        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
        if "AMX" in capability:
            return True
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
