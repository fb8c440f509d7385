"""Causal-LM objective: next-token cross-entropy summed over trained (label != -100) tokens.

Features are ``{"input_ids": list[int], "labels": list[int]}`` (un-shifted labels, -100 = not
trained) from ``lmforge.data.encode_causal``; packed rows (with ``lengths``) from
``lmforge.data.packing.pack_features`` are collated padding-free.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lmforge.config.schema import DataConfig
from lmforge.model.task import TaskInfo
from lmforge.objectives.base import EvalOutput, LossOutput, ObjectiveBase
from lmforge.objectives.causal_lm.chunked import IGNORE, causal_lm_row_losses, chunked_causal_lm_loss


class CausalLMObjective(ObjectiveBase):
    """Token-weighted next-token loss; the unit is one trained label token."""


    def task_info(self, labels: list[str] | None = None, model_config: Any | None = None) -> TaskInfo:
        return TaskInfo(head="causal_lm")

    def encode(self, records: list[dict], tokenizer: Any, data: DataConfig) -> list[dict]:
        from lmforge.data.encode import encode_causal

        return encode_causal(records, tokenizer, data)

    def collate(self, features: list[dict], tokenizer: Any) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids`` / ``attention_mask`` / ``labels`` (B, T), or a packed batch."""
        pad_id = _pad_id(tokenizer)
        if features and "lengths" in features[0]:
            from lmforge.data.packing import collate_packed

            return collate_packed(features, pad_id)
        from lmforge.data.collate import collate_causal

        return collate_causal(features, pad_id)

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """Label tokens the loss of ``batch`` sums over (shifted labels != -100)."""
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Sum of CE over trained tokens (fp32 scalar, differentiable) and their number."""
        total, count = chunked_causal_lm_loss(model, batch, chunk_size=self.params.chunk_size)
        return LossOutput(total=total, count=count)

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> EvalOutput:
        """Loss sum and token count of ``batch`` without gradients (perplexity = exp(sum / count)),
        with the per-row split in ``rows``."""
        totals, counts = causal_lm_row_losses(model, batch, chunk_size=self.params.chunk_size)
        return EvalOutput(loss_total=float(totals.sum()), count=int(counts.sum()),
                          rows=[(float(t), int(c)) for t, c in zip(totals.tolist(), counts.tolist())])


def _pad_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    return 0 if pad is None else int(pad)
