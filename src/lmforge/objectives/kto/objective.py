"""KTO (Ethayarajh et al. 2024): unpaired desirable / undesirable completions, unit = one example.

r = log pi(y|x) - log ref(y|x) (summed over completion tokens); z = max(0, mean r over the
micro-batch), detached (the paper's reference point, estimated from the batch itself rather
than from mismatched prompt/answer pairs: cheaper, and identical in expectation for a policy
that does not special-case the prompt). Losses:
desirable w_d * (1 - sigmoid(beta (r - z))), undesirable w_u * (1 - sigmoid(beta (z - r))).
Features from :func:`lmforge.data.preference.encode_unpaired`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from lmforge.config.schema import DataConfig
from lmforge.model.task import TaskInfo
from lmforge.model.reference import ReferencePolicy
from lmforge.objectives.base import EvalOutput, LossOutput, ObjectiveBase, credit, per_row
from lmforge.objectives.preference import Reference, sequence_logps
from lmforge.objectives.registry import ObjectiveParams, ObjectiveSpec


def kto_losses(policy: torch.Tensor, reference: torch.Tensor, desirable: torch.Tensor, *, beta: float,
               desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(losses, rewards), both (B,), from (B,) summed log-probs and a (B,) bool ``desirable`` mask.

    rewards = beta * (policy - reference), detached.
    """
    ratio = policy - reference
    z = ratio.detach().mean().clamp(min=0)
    good = desirable_weight * (1 - torch.sigmoid(beta * (ratio - z)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (z - ratio)))
    return torch.where(desirable, good, bad), (beta * ratio).detach()


class KTOObjective(ObjectiveBase):
    """KTO against the reference policy (the method's: adapter switched off, or a frozen copy)."""

    def __init__(self, spec: ObjectiveSpec, params: ObjectiveParams):
        super().__init__(spec, params)
        self.reference = Reference(cache=params.precompute_reference)

    def task_info(self, labels: list[str] | None = None, model_config: Any | None = None) -> TaskInfo:
        return TaskInfo(head="causal_lm")

    def bind(self, model: nn.Module, tokenizer: Any = None,
             reference: Callable[[], ReferencePolicy] | None = None) -> None:
        """Fix the reference policy before training: ``reference()`` (the method's), else a frozen copy."""
        self.reference.bind(model, reference)

    def encode(self, records: list[dict], tokenizer: Any, data: DataConfig) -> list[dict]:
        from lmforge.data.preference import encode_unpaired

        return encode_unpaired(records, tokenizer, data)

    def collate(self, features: list[dict], tokenizer: Any) -> dict[str, torch.Tensor]:
        from lmforge.data.preference import collate_unpaired, pad_token_id

        return collate_unpaired(features, pad_token_id(tokenizer))

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """Examples in the batch."""
        return int(batch["uid"].shape[0])

    def _losses(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        policy, _ = sequence_logps(model, batch["input_ids"], batch.get("attention_mask"), batch["labels"])
        keys = [(u, 2) for u in batch["uid"].tolist()]
        reference = self.reference.sequence_logps(model, batch, keys)
        p = self.params
        losses, rewards = kto_losses(policy, reference, batch["desirable"], beta=p.beta,
                                     desirable_weight=p.desirable_weight, undesirable_weight=p.undesirable_weight)
        return losses, rewards, policy

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Sum of per-example KTO losses and the number of examples."""
        losses, rewards, _ = self._losses(model, batch)
        return LossOutput(total=losses.sum(), count=losses.shape[0])

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> EvalOutput:
        """Loss sum / examples; ``scores`` = per example [reward, desirable (1/0), policy log-prob]."""
        losses, rewards, policy = self._losses(model, batch)
        flags = batch["desirable"].float()
        rows = torch.stack([rewards, flags, policy.detach()], dim=1).tolist()
        return EvalOutput(loss_total=float(losses.sum()), count=losses.shape[0], scores=rows, rows=per_row(losses))

    def eval_metrics(self, outputs: list[EvalOutput]) -> dict[str, float]:
        """reward_accuracy (good answers with reward > 0, bad ones < 0; a reward of exactly 0 counts half: before
        training the policy is the reference, every reward is 0 and the accuracy is chance, 0.5), mean reward of
        good / bad answers and their difference (reward_margin)."""
        rows = [row for o in outputs for row in o.scores]
        if not rows:
            return {}
        good = [r for r, flag, _ in rows if flag > 0.5]
        bad = [r for r, flag, _ in rows if flag <= 0.5]
        right = sum(credit(r) for r in good) + sum(credit(-r) for r in bad)
        mean_good = sum(good) / len(good) if good else 0.0
        mean_bad = sum(bad) / len(bad) if bad else 0.0
        return {"reward_accuracy": right / len(rows), "reward_desirable": mean_good,
                "reward_undesirable": mean_bad, "reward_margin": mean_good - mean_bad}
