"""The bottleneck adapter layer and how it is attached to a model (forward hooks, public APIs only).

An adapter sits on the output of a projection ``proj`` (the attention output projection or the
MLP output projection of a transformer block) and adds a small residual update:

    y = proj(x)  ->  y + up(act(down(y)))        down: d -> d / reduction_factor, up: back to d

``up`` starts at zero (weight and bias), so a fresh adapter returns ``proj``'s output exactly.
The adapter is registered as a child module named ``bottleneck_adapter`` of ``proj`` (so it shows
up in ``named_parameters`` and moves with ``.to()``), and a module-level forward hook on ``proj``
calls it; the hook finds the adapter through the module it is called on, so deep copies work.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

CHILD = "bottleneck_adapter"
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    """``forward(y) -> up(act(down(y)))``: the update only; shapes (..., dim) -> (..., dim)."""

    def __init__(self, dim: int, bottleneck: int, non_linearity: str, *, dtype=None, device=None):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck, dtype=dtype, device=device)
        self.act = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(bottleneck, dim, dtype=dtype, device=device)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.enabled = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(hidden)))


def _apply_adapter(module: nn.Module, args, output):
    """Forward hook on a projection: add its adapter's update to the output (when enabled)."""
    adapter = getattr(module, CHILD, None)
    if adapter is None or not adapter.enabled:
        return output
    return output + adapter(output).to(output.dtype)


def output_features(module: nn.Module) -> int:
    """Width of a projection's output: ``nn.Linear.out_features`` or transformers' ``Conv1D.nf``."""
    width = getattr(module, "out_features", None) or getattr(module, "nf", None)
    if not isinstance(width, int):
        raise TypeError(f"{type(module).__name__} is not a linear projection")
    return width


def attach_adapter(proj: nn.Module, reduction_factor: int, non_linearity: str) -> BottleneckAdapter:
    """Add a fresh (zero-update) adapter to ``proj``'s output; returns it. ``proj`` must be linear."""
    if hasattr(proj, CHILD):
        raise ValueError(f"{type(proj).__name__} already has an adapter")
    dim = output_features(proj)
    weight = next(proj.parameters())
    dtype = weight.dtype if weight.is_floating_point() else torch.float32
    adapter = BottleneckAdapter(dim, max(1, dim // reduction_factor), non_linearity, dtype=dtype, device=weight.device)
    proj.add_module(CHILD, adapter)
    proj.register_forward_hook(_apply_adapter)
    return adapter


def adapters(model: nn.Module) -> list[BottleneckAdapter]:
    """Every bottleneck adapter inside ``model``."""
    return [m for m in model.modules() if isinstance(m, BottleneckAdapter)]


@contextlib.contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block ``model`` computes exactly its base outputs (every adapter skipped)."""
    found = adapters(model)
    previous = [a.enabled for a in found]
    for adapter in found:
        adapter.enabled = False
    try:
        yield model
    finally:
        for adapter, flag in zip(found, previous):
            adapter.enabled = flag
