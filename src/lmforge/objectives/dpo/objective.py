"""DPO / SimPO / ORPO objectives: one batch = B preference pairs (2B rows), unit = one pair.

``loss`` returns the sum of per-pair losses and B (pairs), so gradient accumulation weights every
pair equally. Features come from :func:`lmforge.data.preference.encode_pairs`; batches from
:func:`~lmforge.data.preference.collate_pairs` (rows ``[:B]`` chosen, ``[B:]`` rejected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from lmforge.config.schema import DataConfig
from lmforge.model.task import TaskInfo
from lmforge.model.reference import ReferencePolicy
from lmforge.objectives.base import EvalOutput, LossOutput, ObjectiveBase, credit, per_row
from lmforge.objectives.dpo.losses import dpo_losses, orpo_losses, pair_metrics, simpo_losses
from lmforge.objectives.preference import Reference, sequence_logps
from lmforge.objectives.registry import ObjectiveParams, ObjectiveSpec


@dataclass
class PairStats:
    """(B,) tensors of one batch of pairs: policy log-prob sums, completion token counts, reference sums."""

    policy_chosen: torch.Tensor
    policy_rejected: torch.Tensor
    n_chosen: torch.Tensor
    n_rejected: torch.Tensor
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None


class PairObjective(ObjectiveBase):
    """Shared encode / collate / loss plumbing; subclasses define ``pair_losses``."""

    uses_reference = False

    def __init__(self, spec: ObjectiveSpec, params: ObjectiveParams):
        super().__init__(spec, params)
        self.reference = Reference(cache=self.caches_reference) if self.uses_reference else None

    @property
    def caches_reference(self) -> bool:
        """Whether reference log-probs are computed once per example (objectives with a reference)."""
        return False

    def task_info(self, labels: list[str] | None = None, model_config: Any | None = None) -> TaskInfo:
        return TaskInfo(head="causal_lm")

    def bind(self, model: nn.Module, tokenizer: Any = None,
             reference: Callable[[], ReferencePolicy] | None = None) -> None:
        """Fix the reference policy before training: ``reference()`` (the method's), else a frozen copy."""
        if self.reference is not None:
            self.reference.bind(model, reference)

    def encode(self, records: list[dict], tokenizer: Any, data: DataConfig) -> list[dict]:
        from lmforge.data.preference import encode_pairs

        return encode_pairs(records, tokenizer, data)

    def collate(self, features: list[dict], tokenizer: Any) -> dict[str, torch.Tensor]:
        from lmforge.data.preference import collate_pairs, pad_token_id

        return collate_pairs(features, pad_token_id(tokenizer))

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """Pairs in the batch."""
        return int(batch["uid"].shape[0])

    def pair_stats(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> PairStats:
        """Policy (with grad when enabled) and reference log-prob sums of chosen / rejected completions."""
        pairs = self.count(batch)
        sums, counts = sequence_logps(model, batch["input_ids"], batch.get("attention_mask"), batch["labels"])
        stats = PairStats(sums[:pairs], sums[pairs:], counts[:pairs], counts[pairs:])
        if self.reference is not None:
            uids = batch["uid"].tolist()
            keys = [(u, 0) for u in uids] + [(u, 1) for u in uids]
            ref = self.reference.sequence_logps(model, batch, keys)
            stats.ref_chosen, stats.ref_rejected = ref[:pairs], ref[pairs:]
        return stats

    def pair_losses(self, stats: PairStats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Sum of per-pair losses (fp32 scalar) and the number of pairs; logs accuracy / margin."""
        stats = self.pair_stats(model, batch)
        losses, chosen, rejected = self.pair_losses(stats)
        return LossOutput(total=losses.sum(), count=losses.shape[0], logs=pair_metrics(chosen, rejected))

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> EvalOutput:
        """Loss sum / pairs; ``scores`` = per pair [chosen reward, rejected reward, logp chosen, logp rejected]."""
        stats = self.pair_stats(model, batch)
        losses, chosen, rejected = self.pair_losses(stats)
        rows = torch.stack([chosen, rejected, stats.policy_chosen, stats.policy_rejected], dim=1).tolist()
        return EvalOutput(loss_total=float(losses.sum()), count=losses.shape[0], scores=rows, rows=per_row(losses))

    def eval_metrics(self, outputs: list[EvalOutput]) -> dict[str, float]:
        """reward_accuracy (share of pairs with chosen reward > rejected, a tie counting half: before training the
        policy is the reference, every reward is 0 and the accuracy is chance, 0.5), reward_margin (mean
        chosen - rejected reward), logps_chosen / logps_rejected (mean summed completion log-probs),
        logps_accuracy (share of pairs where the policy itself gives the chosen answer the higher
        log-prob: meaningful at step 0 too, where every implicit DPO reward is 0)."""
        return summarize_pairs([row for o in outputs for row in o.scores])


def summarize_pairs(rows: list[list[float]]) -> dict[str, float]:
    """Pair metrics from rows ``[chosen_reward, rejected_reward, logp_chosen, logp_rejected]``."""
    if not rows:
        return {}
    n = len(rows)
    return {
        "reward_accuracy": sum(credit(r[0] - r[1]) for r in rows) / n,
        "reward_margin": sum(r[0] - r[1] for r in rows) / n,
        "logps_chosen": sum(r[2] for r in rows) / n,
        "logps_rejected": sum(r[3] for r in rows) / n,
        "logps_accuracy": sum(1 for r in rows if r[2] > r[3]) / n,
    }


class DPOObjective(PairObjective):
    """DPO with sigmoid / IPO / hinge loss against the reference policy."""

    uses_reference = True

    @property
    def caches_reference(self) -> bool:
        return self.params.precompute_reference

    def pair_losses(self, stats: PairStats):
        p = self.params
        return dpo_losses(stats.policy_chosen, stats.policy_rejected, stats.ref_chosen, stats.ref_rejected,
                          beta=p.beta, variant=p.loss, label_smoothing=p.label_smoothing,
                          n_chosen=stats.n_chosen, n_rejected=stats.n_rejected)


class SimPOObjective(PairObjective):
    """SimPO: reference-free, length-normalised."""

    def pair_losses(self, stats: PairStats):
        return simpo_losses(stats.policy_chosen, stats.policy_rejected, stats.n_chosen, stats.n_rejected,
                            beta=self.params.beta, gamma=self.params.gamma)


class ORPOObjective(PairObjective):
    """ORPO: chosen NLL + odds-ratio term, reference-free."""

    def pair_losses(self, stats: PairStats):
        return orpo_losses(stats.policy_chosen, stats.policy_rejected, stats.n_chosen, stats.n_rejected,
                           beta=self.params.beta)
