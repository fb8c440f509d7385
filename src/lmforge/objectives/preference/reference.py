"""Reference log-probs of DPO / KTO / GRPO: the policy's completions scored by the reference policy.

The reference policy itself (the model before training) comes from the method
(``Method.reference(model)``, a :class:`~lmforge.model.reference.ReferencePolicy`: peft methods
switch their adapter off, the others keep a frozen copy) and is handed over by the pipeline through
``Objective.bind``, which must run before training changes the weights (and before a resumed run
loads its checkpoint). Without a bound policy a frozen copy is taken at the first reference call,
with a warning.

With ``cache=True`` per-row reference log-probs are computed once per example (keyed by the
example's ``uid``) and reused on later epochs and evaluations.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator

import torch
from torch import nn

from lmforge.model.reference import FrozenCopy, ReferencePolicy
from lmforge.objectives.preference.logprobs import sequence_logps, token_logps

log = logging.getLogger(__name__)

MakeReference = Callable[[], ReferencePolicy]


class Reference:
    """Reference log-probs for a policy model (see module doc)."""

    def __init__(self, cache: bool = False):
        self.policy: ReferencePolicy | None = None
        self.cache: dict[tuple[int, int], float] | None = {} if cache else None

    def bind(self, model: nn.Module, make_reference: MakeReference | None = None) -> None:
        """Fix the reference for ``model`` now: ``make_reference()`` (the method's hook), else a frozen
        copy of ``model``. A second bind keeps the first reference."""
        if self.policy is None:
            self.policy = make_reference() if make_reference is not None else FrozenCopy(model)

    @contextlib.contextmanager
    def model(self, policy: nn.Module) -> Iterator[nn.Module]:
        """The reference model for ``policy``, under ``torch.no_grad`` for the block."""
        if self.policy is None:
            log.warning("reference model: no bind() before training; copying the policy now")
            self.bind(policy)
        with torch.no_grad(), self.policy.use(policy) as reference:
            yield reference

    def sequence_logps(self, policy: nn.Module, batch: dict, keys: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """(N,) summed completion log-probs of the rows of ``batch`` under the reference.

        ``keys`` (one hashable per row) enable the cache: rows seen before are not recomputed.
        """
        device = batch["input_ids"].device
        if self.cache is not None and keys is not None and all(k in self.cache for k in keys):
            return torch.tensor([self.cache[k] for k in keys], dtype=torch.float32, device=device)
        with self.model(policy) as ref:
            sums, _ = sequence_logps(ref, batch["input_ids"], batch.get("attention_mask"), batch["labels"])
        sums = sums.detach().float()
        if self.cache is not None and keys is not None:
            self.cache.update(zip(keys, sums.tolist()))
        return sums

    def token_logps(self, policy: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    labels: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T-1) per-token reference log-probs (0 where not scored), no grad."""
        with self.model(policy) as ref:
            logps, _ = token_logps(ref, input_ids, attention_mask, labels, position_ids=position_ids)
        return logps.detach()

