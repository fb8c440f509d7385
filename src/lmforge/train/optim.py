"""AdamW over trainable parameters and the warmup + decay learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from lmforge.config.schema import TrainConfig
from lmforge.errors import UserError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into a decayed group and a no-decay group.

    No decay on biases, norm weights and any other 1-d parameter (gains, scalars). Empty groups
    are dropped. Parameter order follows ``model.named_parameters()`` (stable for checkpoints).
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lowered = name.lower()
        if param.ndim < 2 or lowered.endswith("bias") or "norm" in lowered:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (lr = train_cfg.lr) over trainable params, by ``train_cfg.optimizer``:

    "adamw": torch AdamW, fused on one CPU or CUDA device, else foreach (fp32 m and v: 8 bytes / parameter).
    "adamw_8bit" / "paged_adamw_8bit": bitsandbytes AdamW with blockwise 8-bit m and v (~2 bytes /
    parameter; tensors under 4096 elements keep fp32 state). Works on CPU and CUDA; "paged" keeps
    the state in CUDA unified memory (on CPU bitsandbytes falls back to the unpaged optimizer).
    """
    groups = param_groups(model, train_cfg.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters (check the method)")
    return OPTIMIZERS[train_cfg.optimizer](groups, peak_lr(train_cfg))


# A run's lr is never None here: the plan fills in the method's default (pipeline.plan.resolve_method_defaults).
# Only a direct train() call with a TrainConfig that names no lr falls back to this generic LoRA-scale rate.
GENERIC_LR = 2e-4


def peak_lr(train_cfg: TrainConfig) -> float:
    """``train_cfg.lr``; :data:`GENERIC_LR` when unset (a direct library call that resolved no method)."""
    return GENERIC_LR if train_cfg.lr is None else train_cfg.lr


def _torch_adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """Fused AdamW when every parameter sits on one CPU or CUDA device (HF Trainer's default too):
    one in-place kernel per tensor, no trainable-sized temporaries. Measured on a 2-core Intel Xeon,
    99M fp32 parameters: 0.064 s per step vs 0.30 s for foreach, whose temporaries added 380 MiB to the
    peak. Parameters spread over devices (``device_map``) keep foreach."""
    devices = {p.device for g in groups for p in g["params"]}
    if len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda"):
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    return torch.optim.AdamW(groups, lr=lr, foreach=True)


def _bnb_adamw(paged: bool):
    def build(groups: list[dict], lr: float) -> torch.optim.Optimizer:
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise UserError("8-bit optimizers need bitsandbytes", where="train.optimizer",
                            hint="pip install bitsandbytes, or use optimizer: adamw") from exc
        if any(hasattr(p, "device_mesh") for g in groups for p in g["params"]):  # FSDP DTensor shards
            raise UserError("8-bit optimizers cannot update FSDP-sharded parameters (bitsandbytes has no DTensor "
                            "support)", where="train.optimizer",
                            hint="use optimizer: adamw with fsdp, or distributed.strategy: ddp with adamw_8bit")
        cls = bnb.optim.PagedAdamW8bit if paged else bnb.optim.AdamW8bit
        return cls(groups, lr=lr)

    return build


OPTIMIZERS = {"adamw": _torch_adamw, "adamw_8bit": _bnb_adamw(False), "paged_adamw_8bit": _bnb_adamw(True)}

# Optimizer-state bytes per trainable parameter (for lmforge estimate).
STATE_BYTES = {"adamw": 8.0, "adamw_8bit": 2.0, "paged_adamw_8bit": 2.0}


def lr_factor(step: int, total_steps: int, warmup_steps: int, kind: str) -> float:
    """Multiplier of the peak lr for the optimizer step number ``step`` (0-based).

    Linear warmup from 1/(warmup+1) to 1 over ``warmup_steps``, then "cosine" or "linear" decay
    reaching 0 after ``total_steps``, or "constant".
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if kind == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown scheduler '{kind}'")


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg: TrainConfig, total_steps: int) -> LambdaLR:
    """LambdaLR with ``warmup_ratio * total_steps`` warmup steps then ``train_cfg.scheduler``."""
    warmup = int(math.ceil(train_cfg.warmup_ratio * total_steps))
    kind = train_cfg.scheduler
    return LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup, kind))
