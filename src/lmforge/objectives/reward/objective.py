"""Reward-model objective: a 1-output sequence-classification head scores prompt + answer.

Bradley-Terry (Ouyang et al. 2022): loss = -log sigmoid(r(x, y_w) - r(x, y_l) - margin), summed
over pairs; unit = one pair. Batches are :func:`lmforge.data.preference.collate_pairs` batches
(rows ``[:B]`` chosen, ``[B:]`` rejected); the score of a row is the model's single logit (the
model pools the last non-pad token, or [CLS] for encoders).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.config.schema import DataConfig
from lmforge.model.task import TaskInfo
from lmforge.objectives.base import EvalOutput, LossOutput, ObjectiveBase, per_row


def bradley_terry_losses(chosen: torch.Tensor, rejected: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """(B,) per-pair losses -log sigmoid(chosen - rejected - margin) from (B,) scores."""
    return -F.logsigmoid(chosen.float() - rejected.float() - margin)


def score(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(N,) scalar rewards of the rows (the 1-label classification logit)."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]


class RewardObjective(ObjectiveBase):
    """Scalar reward head with the Bradley-Terry pair loss."""

    def task_info(self, labels: list[str] | None = None, model_config: Any | None = None) -> TaskInfo:
        return TaskInfo(head="sequence_classification", num_labels=1, labels=("reward",))

    def encode(self, records: list[dict], tokenizer: Any, data: DataConfig) -> list[dict]:
        from lmforge.data.preference import encode_pairs

        return encode_pairs(records, tokenizer, data)

    def collate(self, features: list[dict], tokenizer: Any) -> dict[str, torch.Tensor]:
        from lmforge.data.preference import collate_pairs, pad_token_id

        batch = collate_pairs(features, pad_token_id(tokenizer))
        batch.pop("labels")
        return batch

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """Pairs in the batch."""
        return int(batch["uid"].shape[0])

    def _pair_scores(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = self.count(batch)
        scores = score(model, batch["input_ids"], batch.get("attention_mask"))
        return scores[:pairs], scores[pairs:]

    def _losses(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        losses = bradley_terry_losses(chosen, rejected, self.params.margin)
        if self.params.center_weight:
            losses = losses + self.params.center_weight * (chosen.float() ** 2 + rejected.float() ** 2)
        return losses

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Sum of per-pair Bradley-Terry losses and the number of pairs."""
        chosen, rejected = self._pair_scores(model, batch)
        losses = self._losses(chosen, rejected)
        accuracy = float((chosen > rejected).float().mean())
        return LossOutput(total=losses.sum(), count=losses.shape[0], logs={"pairwise_accuracy": accuracy})

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> EvalOutput:
        """Loss sum / pairs; ``scores`` = per pair [chosen score, rejected score]."""
        chosen, rejected = self._pair_scores(model, batch)
        losses = self._losses(chosen, rejected)
        rows = torch.stack([chosen.float(), rejected.float()], dim=1).tolist()
        return EvalOutput(loss_total=float(losses.sum()), count=losses.shape[0], scores=rows, rows=per_row(losses))

    def eval_metrics(self, outputs: list[EvalOutput]) -> dict[str, float]:
        """pairwise_accuracy (chosen scored above rejected; ties count as wrong), reward_margin,
        reward_chosen / reward_rejected (mean scores) over all held-out pairs."""
        rows = [row for o in outputs for row in o.scores]
        if not rows:
            return {}
        n = len(rows)
        return {
            "pairwise_accuracy": sum(1 for c, r in rows if c > r) / n,
            "reward_margin": sum(c - r for c, r in rows) / n,
            "reward_chosen": sum(c for c, _ in rows) / n,
            "reward_rejected": sum(r for _, r in rows) / n,
        }
