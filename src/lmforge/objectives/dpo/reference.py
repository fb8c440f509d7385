"""The reference policy of DPO / KTO / GRPO: the adapter-disabled policy or a frozen copy.

- PEFT models (LoRA, QLoRA, ...): the reference is the same model with its adapters disabled
  (``model.disable_adapter()``), so no second copy of the weights exists.
- Anything else (full / freeze fine-tuning): a frozen deep copy taken by :meth:`Reference.bind`,
  which must run before training changes the weights (and before a resumed run loads its
  checkpoint). Without ``bind`` the copy is taken at the first reference call, with a warning.

With ``cache=True`` per-row reference log-probs are computed once per example (keyed by the
example's ``uid``) and reused on later epochs and evaluations.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Iterator

import torch
from torch import nn

from lmforge.objectives.dpo.logprobs import sequence_logps, token_logps

log = logging.getLogger(__name__)


def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


class Reference:
    """Reference log-probs for a policy model (see module doc)."""

    def __init__(self, cache: bool = False):
        self.frozen: nn.Module | None = None
        self.cache: dict[tuple[int, int], float] | None = {} if cache else None

    def bind(self, model: nn.Module) -> None:
        """Snapshot the reference for ``model`` now (a frozen copy unless it is a PEFT model)."""
        if not is_peft(model) and self.frozen is None:
            self.frozen = copy.deepcopy(model).eval().requires_grad_(False)

    @contextlib.contextmanager
    def model(self, policy: nn.Module) -> Iterator[nn.Module]:
        """The reference model to run under ``torch.no_grad`` for the block."""
        with torch.no_grad():
            if is_peft(policy):
                with policy.disable_adapter():
                    yield policy
                return
            if self.frozen is None:
                log.warning("reference model: no bind() before training; copying the policy now")
                self.bind(policy)
            yield self.frozen

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
