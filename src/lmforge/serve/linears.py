"""Module surgery on a model the server loaded for itself: swap linear layers, fuse projections of one input.

``replace_linears`` swaps every plain ``nn.Linear`` for another layer (int8, packed). ``fuse_projections`` turns
the projections that always read the same tensor (q/k/v of an attention block, gate/up of a gated MLP) into one
``nn.Linear`` over their concatenated weights plus one slice module per projection: the first slice called with an
input computes the fused product, the others reuse it. A decode step multiplies one row by each weight, so the
number of matmul calls counts, not only the bytes: with int8 weights on the 2-core Zen 5 EPYC of
benchmarks/RESULTS.md, SmolLM2-135M decoded one token in 9.1 ms with fused projections (4 calls a layer) against
11-12 ms with 7. Callers keep their code: ``attn.q_proj(h)`` still returns q.

The reuse is by identity: a slice returns the stored product only when it is called with the very tensor object
the product was computed from (held alive meanwhile, so its identity cannot be reused); any other input
recomputes. The product is dropped once every slice has taken its part (a prefill's products would otherwise
stay alive until the next request: ~19 MB a layer for 8 prompts of 300 tokens at SmolLM2's widths).
Each output channel is the same dot product as before, so per-channel int8 quantization of the fused weight
gives the same numbers as of each projection; a packed fp32 / bf16 product may sum in another order.
Not done on projections with forward hooks (lmforge's bottleneck adapters), on a PEFT-wrapped model (the server
does not fuse when it serves adapters), or on layers of different widths, dtypes or bias use.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module],
                    keep: Callable[[nn.Linear], bool] = lambda _: True) -> int:
    """Replace every plain ``nn.Linear`` of ``model`` for which ``keep`` holds by ``make(linear)``, in place
    through the parent modules' public ``setattr``; returns how many. A linear layer with forward hooks or child
    modules (lmforge's bottleneck adapters hang on their projection that way) stays as it is."""
    targets = [(name, module) for name, module in model.named_modules() if type(module) is nn.Linear
               and not module._forward_hooks and not module._forward_pre_hooks and not module._modules
               and keep(module)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(module))
    return len(targets)


class SharedInputLinear(nn.Module):
    """The fused layer of one group of ``parts`` projections; ``output(x, part)`` computes ``linear(x)`` once per
    input tensor object and forgets it when all parts have taken it."""

    def __init__(self, linear: nn.Linear, parts: int):
        super().__init__()
        self.linear, self.parts = linear, parts
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        self._taken: set[int] = set()

    def output(self, x: torch.Tensor, part: int) -> torch.Tensor:
        last = self._last
        if last is None or last[0] is not x or part in self._taken:
            last, self._taken = (x, self.linear(x)), set()
        self._taken.add(part)
        self._last = None if len(self._taken) == self.parts else last
        return last[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (the whole fused product)
        return self.linear(x)


class ProjectionSlice(nn.Module):
    """One projection of a fused group: output channels ``start:stop`` of the group's product."""

    def __init__(self, group: SharedInputLinear, start: int, stop: int):
        super().__init__()
        self._shared = (group,)  # a reference, not a child: the group is registered once, on the parent module
        self.start, self.stop = start, stop
        self.in_features, self.out_features = group.linear.in_features, stop - start

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (see class)
        return self._shared[0].output(x, self.start)[..., self.start:self.stop]

    @property
    def shared(self) -> SharedInputLinear:
        """The fused layer this projection is a slice of (lmforge.model.fastdecode computes it once and splits)."""
        return self._shared[0]

    def extra_repr(self) -> str:
        return f"channels {self.start}:{self.stop} of the fused projection"


def fuse_projections(model: nn.Module) -> int:
    """Fuse every group of :data:`GROUPS` found on a module of ``model`` (see the module doc); returns how many
    groups were fused. The fused layer is registered on the parent as ``fused_<first>_<last>``."""
    fused = 0
    for parent in list(model.modules()):
        for names in GROUPS:
            parts = [getattr(parent, n, None) for n in names]
            if not all(_fusable(p, parts[0]) for p in parts):
                continue
            weight = torch.cat([p.weight.detach() for p in parts])
            bias = None if parts[0].bias is None else torch.cat([p.bias.detach() for p in parts])
            linear = nn.Linear(parts[0].in_features, weight.shape[0], bias=bias is not None,
                               device=weight.device, dtype=weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(weight)
                if bias is not None:
                    linear.bias.copy_(bias)
            group = SharedInputLinear(linear, len(parts))
            setattr(parent, f"fused_{names[0]}_{names[-1]}", group)
            start = 0
            for name, part in zip(names, parts):
                setattr(parent, name, ProjectionSlice(group, start, start + part.out_features))
                start += part.out_features
            fused += 1
    return fused


def _fusable(part, first) -> bool:
    return (type(part) is nn.Linear and not part._forward_hooks and not part._forward_pre_hooks
            and part.in_features == first.in_features and part.weight.dtype == first.weight.dtype
            and part.weight.device == first.weight.device and (part.bias is None) == (first.bias is None))
