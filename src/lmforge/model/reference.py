"""The reference policy that preference objectives (dpo, kto, grpo) compare the trained policy with.

It is the model as it was before training. How to get it is method knowledge (a method that
wraps the base in switchable adapters can switch them off; a method that changes the base
weights needs a frozen copy); that it is needed is objective knowledge. This module is where the
two meet, one stage below both: methods return a :class:`ReferencePolicy` from
``Method.reference(model)``, the pipeline hands it to ``Objective.bind``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import ContextManager, Iterator, Protocol

from torch import nn


class ReferencePolicy(Protocol):
    def use(self, policy: nn.Module) -> ContextManager[nn.Module]:
        """Context manager yielding the reference model for ``policy`` (callers run it under no_grad)."""


class FrozenCopy:
    """A frozen deep copy of ``model`` taken now, before training changes its weights (memory: one
    more copy of the model). The default reference of every method."""

    def __init__(self, model: nn.Module):
        self.frozen = copy.deepcopy(model).eval().requires_grad_(False)

    @contextlib.contextmanager
    def use(self, policy: nn.Module) -> Iterator[nn.Module]:
        yield self.frozen
