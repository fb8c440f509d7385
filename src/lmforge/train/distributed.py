"""Several processes through torch.distributed: who we are, the process group, the wrapped model.

The launcher (``torchrun`` / ``lmforge train --nproc N``, see :mod:`lmforge.train.launch`) sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; without them the
run is one process and nothing here creates a process group. The loop never calls this module:
:class:`lmforge.train.runtime.Runtime` does.

Math (same as one process with the same global batch): every optimizer step consumes the global
window of ``grad_accum`` micro-batches of ``batch_size`` examples; each micro-batch is split
across ranks by striding (rank r takes examples r, r+N, ...). Unit counts are summed over ranks
before any backward, each rank backpropagates ``world_size * loss_sum / global_units`` and DDP /
FSDP average gradients over ranks, so the update is sum(loss) / sum(units) over the global window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from lmforge.config.schema import DistributedConfig


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place in the job: global rank, world size, rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def process_info(environ: dict[str, str] | None = None) -> ProcessInfo:
    """Rank / world size / local rank from the torchrun environment (one process when unset)."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessInfo()
    return ProcessInfo(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", env.get("RANK", "0"))))


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run): the process that writes files and prints."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return process_info().is_main


def init_process_group(info: ProcessInfo, device: torch.device, cfg: DistributedConfig) -> None:
    """Join the job's default process group (env:// rendezvous) unless already joined.

    Backend: ``cfg.backend``, or for "auto" nccl on CUDA and gloo on CPU.
    """
    if info.world_size <= 1 or dist.is_initialized():
        return
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend=backend, rank=info.rank, world_size=info.world_size, timeout=timedelta(seconds=cfg.timeout_s)
    )


def wrap_model(model: nn.Module, device: torch.device, strategy: str) -> nn.Module:
    """DDP (``find_unused_parameters=False``) or FSDP2 ``fully_shard`` around ``model``.

    DDP returns a new wrapper (the loop runs forward through it; ``model`` keeps the same
    parameter objects, so checkpoints and evaluation use ``model`` directly). ``fully_shard``
    converts ``model`` in place (parameters become DTensor shards): each decoder layer (children
    of ``ModuleList``s holding trainable parameters) is an FSDP unit, the decoder body + output
    projection one more, the root the last; it returns a :class:`RootForward` around ``model``.
    """
    if strategy == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules()):
            if isinstance(module, nn.ModuleList):
                for layer in module:
                    if any(p.requires_grad for p in layer.parameters()):
                        fully_shard(layer)
        ends = _body_and_head(model)
        if ends:  # the causal-LM loss may call them directly (lmforge.objectives.causal_lm.chunked)
            fully_shard(ends, reshard_after_forward=False)
        fully_shard(model)
        return RootForward(model)
    raise ValueError(f"unknown distributed strategy '{strategy}'")


class RootForward(nn.Module):
    """Runs ``module``'s own forward (so FSDP's root hooks run first in every step).

    It has no ``get_decoder``, so objectives take their plain full-forward path through it.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def _body_and_head(model: nn.Module) -> list[nn.Module]:
    """[decoder body, output projection] of a (PEFT-wrapped) causal LM, else [].

    One FSDP unit for both (tied embeddings share a weight between them), so calling the body
    and the head separately, without the root's forward, still finds whole parameters.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if body is None or head is None or body is base:
        return []
    return [body, head]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64, exact for counts < 2**53)."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_object(value: object) -> object:
    """Rank 0's ``value`` on every rank (identity without a process group)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shard_window(window: list[list[int]], rank: int, world_size: int) -> list[tuple[list[int], float]]:
    """This rank's part of each global micro-batch: ``(indices, weight)`` per micro-batch.

    Rank r takes ``micro[r::world_size]``. Every rank gets the same number of micro-batches (DDP
    needs the same forward/backward sequence everywhere); a rank whose slice is empty gets the
    micro-batch's first example with weight 0.0 (its loss and units count as zero).
    """
    out = []
    for micro in window:
        mine = micro[rank::world_size]
        out.append((mine, 1.0) if mine else (micro[:1], 0.0))
    return out
