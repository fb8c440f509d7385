"""The runtime: device, precision, seeding and threads behind one narrow object.

The training loop calls only :class:`Runtime` (``prepare``, ``autocast``, ``to_device``, and for
several processes ``shard``, ``global_sum``, ``sync``, ``wait``, ``evaluate``); no device,
precision or distribution branch lives in the loop. Models keep fp32 master weights; bf16 runs
the forward under ``torch.autocast``. Distribution details: :mod:`lmforge.train.distributed`.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch
from torch import nn

from lmforge.config.schema import RuntimeConfig
from lmforge.model.packed_attention import restore_attention, use_packed_attention
from lmforge.train import distributed
from lmforge.train.allocator import keep_freed_memory
from lmforge.train.distributed import ProcessInfo
from lmforge.train.precision import cast_for_training, resolve_base_dtype, restore_dtypes
from lmforge.train.threads import apply_thread_policy


@dataclass(frozen=True)
class Runtime:
    """Where and in which precision the loop runs.

    device: the torch device batches and the model live on.
    precision: "bf16" (autocast to bfloat16), "fp32", or "int8" (fp32, with the frozen base of
        LoRA layers multiplying in int8 on CPU; switched on in :meth:`prepare`).
    process: rank / world size (one process by default).
    strategy: "ddp" or "fsdp" (used when ``process.world_size > 1``).
    base_dtype: storage dtype of frozen weights while training (bf16 base for LoRA-family runs).
    compile: ``torch.compile`` the transformer blocks in :meth:`prepare`.
    threads: the configured CPU thread count (None = chosen from the free CPUs, re-checked
        around every evaluation; :mod:`lmforge.train.threads`).
    """

    device: torch.device
    precision: str
    process: ProcessInfo = ProcessInfo()
    strategy: str = "ddp"
    base_dtype: torch.dtype = torch.float32
    compile: bool = False
    threads: int | None = None
    _changed: dict = field(default_factory=dict, repr=False, compare=False)
    _attention: dict = field(default_factory=dict, repr=False, compare=False)
    _memory: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False, compare=False)

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, metrics, progress and reports (rank 0)."""
        return self.process.is_main

    @property
    def world_size(self) -> int:
        return self.process.world_size

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (in place); return the module to run the forward through.

        Frozen fp32 weights are stored in ``base_dtype`` and trainable ones in fp32 (undone by
        :meth:`finish`); with ``compile`` the transformer blocks are compiled in place (parameter
        names and ``state_dict`` keys unchanged), else a supported causal LM switches to packed
        attention (one causal SDPA call per packed sequence, no ``T x T`` mask; undone by
        :meth:`finish`; :mod:`lmforge.model.packed_attention`). On CPU, glibc keeps freed memory for
        the next step until :meth:`finish` (:mod:`lmforge.train.allocator`). One process: ``model`` itself.
        Several: the DDP wrapper (``model`` keeps the same parameters) or ``model`` converted in
        place by FSDP.
        """
        model.to(self.device)
        if self.device.type == "cpu":  # freed activations stay for the next step (undone by finish)
            self._memory.enter_context(keep_freed_memory())
        self._changed.update(cast_for_training(model, self.base_dtype))
        if self.compile:
            compile_blocks(model)
        elif self.device.type == "cpu":  # measured on CPU only; its Python loop would split a compiled graph
            self._attention["previous"] = use_packed_attention(model)
        if self.precision == "int8":
            self._attention["int8"] = use_int8_base(model, True)
        if self.world_size == 1:
            return model
        return distributed.wrap_model(model, self.device, self.strategy)

    def finish(self, model: nn.Module) -> bool:
        """After training: parameters back to the dtypes they had before :meth:`prepare`. Returns
        True when frozen weights were stored in a lower precision: they now hold the rounded
        values (reload the base for exact original weights, as ``pipeline`` does)."""
        rounded = any(not p.requires_grad and dtype.itemsize > p.dtype.itemsize for p, dtype in self._changed.items())
        restore_dtypes(self._changed)
        self._changed.clear()
        self._memory.close()
        restore_attention(model, self._attention.pop("previous", None))
        if self._attention.pop("int8", 0):
            use_int8_base(model, False)
        return rounded

    def shard(self, window: list[list[int]]) -> list[tuple[list[int], float]]:
        """This process's ``(indices, weight)`` per micro-batch of the global ``window``."""
        return distributed.shard_window(window, self.process.rank, self.world_size)

    def global_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over processes (identity for one process)."""
        return distributed.all_reduce_sum(values, self.device)

    def grad_scale(self) -> float:
        """Factor on each backward so gradients AVERAGED over processes equal the global sum."""
        return float(self.world_size)

    def sync(self, wrapped: nn.Module, last: bool) -> ContextManager:
        """Context for one micro-batch's forward+backward: gradient all-reduce only when ``last``."""
        if self.world_size == 1:
            return contextlib.nullcontext()
        if self.strategy == "fsdp":
            wrapped.module.set_requires_gradient_sync(last)
            return contextlib.nullcontext()
        return contextlib.nullcontext() if last else wrapped.no_sync()

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> float:
        """Clip the (global) gradient norm of ``params`` to ``max_norm``; return the norm before."""
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):  # FSDP: a DTensor over the shards
            norm = norm.full_tensor()
        return float(norm)

    def wait(self) -> None:
        """Block until every process gets here (after rank 0's file writes); no-op for one."""
        distributed.barrier()

    def evaluate(self, evaluate_fn: Callable[[nn.Module], dict], model: nn.Module) -> dict:
        """``evaluate_fn(model)`` on rank 0 (DDP) or on every rank (FSDP needs all shards for a
        forward); every process returns rank 0's metrics, so all take the same decisions."""
        runs_here = self.is_main or self.strategy == "fsdp"
        if self.device.type == "cpu":
            apply_thread_policy(self.threads, phase="eval")
        with self.autocast():  # a bf16 base feeds bf16 activations to fp32 trainable layers
            metrics = dict(evaluate_fn(model)) if runs_here else None
        if self.device.type == "cpu":
            apply_thread_policy(self.threads, phase="train")  # the load may have changed meanwhile
        return distributed.broadcast_object(metrics)

    def callbacks(self, writers: list, user: list) -> list:
        """Writers (progress bar, metrics.jsonl, TensorBoard) on rank 0 only; ``user`` everywhere."""
        return (list(writers) if self.is_main else []) + list(user)

    def autocast(self) -> ContextManager:
        """``torch.autocast`` to bfloat16 under bf16, else a null context."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Tensors of ``batch`` moved to the device; other values unchanged."""
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def build_runtime(runtime_cfg: RuntimeConfig, seed: int) -> Runtime:
    """Resolve device / precision, choose threads, seed every RNG; deterministic kernels on CPU.

    On CPU the thread count comes from :func:`lmforge.train.threads.apply_thread_policy`
    (``runtime_cfg.threads``, else the CPUs other processes leave free). Deterministic algorithms are
    on, without ``fill_uninitialized_memory``: torch would NaN-fill every new tensor to expose
    kernels that read memory they did not write (~11% of a bf16 LoRA step, docs/performance.md), which no
    op here does; that same seed gives bit-identical weights and resume equals an uninterrupted
    run is tested directly (tests/invariants/test_loop.py, tests/unit/train/test_runtime.py).

    Under a launcher (``WORLD_SIZE`` > 1) it also joins the process group; CUDA processes use
    ``cuda:<LOCAL_RANK>``. Every rank seeds the same ``seed`` (identical initial weights).
    """
    process = distributed.process_info()
    device = choose_device(runtime_cfg.device)
    if device.type == "cuda" and process.world_size > 1:
        device = torch.device("cuda", process.local_rank)
    if device.type == "cpu":
        apply_thread_policy(runtime_cfg.threads, phase="train")
    elif runtime_cfg.threads is not None:
        torch.set_num_threads(runtime_cfg.threads)
    seed_everything(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
    distributed.init_process_group(process, device, runtime_cfg.distributed)
    precision = check_precision(runtime_cfg, device)
    return Runtime(device=device, precision=precision, process=process, strategy=runtime_cfg.distributed.strategy,
                   base_dtype=resolve_base_dtype(runtime_cfg.memory.base_dtype, precision), compile=runtime_cfg.compile,
                   threads=runtime_cfg.threads)


def check_precision(runtime_cfg: RuntimeConfig, device: torch.device | None = None) -> str:
    """The precision ``runtime_cfg`` resolves to on ``device`` (default: the one it names, resolved here); a
    UserError where this machine cannot run it: int8 off CPU, or where int8 matmuls do not sum exactly. Cheap, so
    a run checks it before it writes anything (lmforge.pipeline.train) as well as when it builds the runtime."""
    from lmforge.errors import UserError

    device = device or choose_device(runtime_cfg.device)
    precision = choose_precision(runtime_cfg.precision, device)
    if precision != "int8":
        return precision
    if device.type != "cpu":
        raise UserError("runtime.precision int8 runs on CPU only (int8 matmuls through oneDNN)", where="runtime.precision",
                        hint="on a GPU use bf16 or auto")
    from lmforge.hardware import cpu_int8_matmul_exact

    if not cpu_int8_matmul_exact():
        raise UserError("int8 matmuls on this CPU do not sum exactly (oneDNN without VNNI or AMX-INT8, e.g. on "
                        "an AVX2-only CPU, is off by ~2%)", where="runtime.precision", hint="use fp32 or auto here")
    return precision


def use_int8_base(model: nn.Module, enabled: bool) -> int:
    """Switch int8 base products on/off in every layer that offers them (``use_int8_base(enabled)``,
    e.g. lmforge's fused LoRA layer); returns how many switched on. UserError when enabling finds none."""
    count = sum(bool(m.use_int8_base(enabled)) for m in model.modules() if hasattr(m, "use_int8_base"))
    if enabled and count == 0:
        from lmforge.errors import UserError

        raise UserError("runtime.precision int8 found no frozen linear layer to run in int8", where="runtime.precision",
                        hint="int8 applies to method lora over a plain (unquantized) base; use fp32 or auto")
    return count


def choose_device(requested: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without CUDA raises a UserError."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        from lmforge.errors import UserError

        raise UserError("CUDA is not available on this machine", where="runtime.device", hint="use device: auto or cpu")
    return torch.device(requested)


def choose_precision(requested: str, device: torch.device) -> str:
    """"auto" -> "bf16" where bf16 matmuls are native (bf16 GPU, AMX/AVX512-BF16 CPU), else "fp32"."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AMX or AVX512-BF16 and oneDNN may use them (:mod:`lmforge.hardware`)."""
    from lmforge.hardware import cpu_has_native_bf16

    return cpu_has_native_bf16(cpuinfo)


def compile_blocks(model: nn.Module) -> int:
    """``torch.compile`` each transformer block in place (regional compilation: one compiled
    graph reused by every same-shaped block, so compile time does not grow with depth); the
    whole model when it has no such blocks. Returns the number of modules compiled."""
    from lmforge.train.checkpointing import checkpointable_layers

    try:
        blocks = checkpointable_layers(model)
    except (AttributeError, ValueError):
        blocks = []
    for block in blocks or [model]:
        block.compile()
    return len(blocks) or 1


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
