"""GRPO (Shao et al. 2024, DeepSeekMath): group sampling, group-normalised advantages, clipped ratio, KL.

One batch = B prompts (left-padded, from :func:`lmforge.data.preference.collate_prompts`).
``loss``: sample k = ``group_size`` completions per prompt (no grad, eval mode), reward each,
A = (r - mean_group) / (std_group + 1e-4), then per completion token
``-min(rho A, clip(rho, 1 - eps, 1 + eps) A) + beta KL`` with rho = pi / pi_old (pi_old = the
sampling policy, detached: one update per sample so rho = 1 in value, but its gradient is the
policy gradient) and KL the k3 estimator exp(ref - pi) - (ref - pi) - 1. Each completion's
loss is its token mean; the unit is one completion (count = B * k, known before sampling).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from lmforge.config.schema import DataConfig
from lmforge.errors import UserError
from lmforge.model.generate import GREEDY, Sampling, generate_tokens, stop_token_ids
from lmforge.model.task import TaskInfo
from lmforge.data.preference import pad_token_id
from lmforge.model.reference import ReferencePolicy
from lmforge.objectives.base import EvalOutput, LossOutput, ObjectiveBase, per_row
from lmforge.objectives.preference import Reference, token_logps
from lmforge.objectives.registry import ObjectiveParams, ObjectiveSpec

IGNORE = -100


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(B, k) rewards -> (B, k) advantages (r - group mean) / (group std + eps); 0 when a group is uniform."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True) if rewards.shape[1] > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + eps)


def clipped_objective(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """Per-token PPO-clip loss -min(rho A, clip(rho) A): logps (N, L), old_logps (N, L), advantages (N,)."""
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(1)
    return -torch.min(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv)


def completion_mask(completions: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """(N, L) bool: tokens up to and including the first stop token of each row."""
    is_stop = torch.zeros_like(completions, dtype=torch.bool)
    for sid in stop_ids:
        is_stop |= completions == sid
    before = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()  # stops strictly before t
    return before == 0


class GRPOObjective(ObjectiveBase):
    """Group relative policy optimisation with a function or reward-model reward."""

    def __init__(self, spec: ObjectiveSpec, params: ObjectiveParams):
        from lmforge.objectives.grpo.rewards import RewardModelScorer, load_reward_function

        super().__init__(spec, params)
        self.tokenizer = None
        self.reference = Reference(cache=False)
        self.reward_fn = load_reward_function(params.reward) if params.reward else None
        self.scorer = RewardModelScorer(params.reward_model) if params.reward_model else None

    def task_info(self, labels: list[str] | None = None, model_config: Any | None = None) -> TaskInfo:
        return TaskInfo(head="causal_lm")

    def bind(self, model: nn.Module, tokenizer: Any = None,
             reference: Callable[[], ReferencePolicy] | None = None) -> None:
        """Fix the tokenizer used to decode samples and, with a KL term (beta > 0), the reference
        policy: ``reference()`` (the method's), else a frozen copy."""
        if tokenizer is not None:
            self.tokenizer = tokenizer
        if self.params.beta > 0:
            self.reference.bind(model, reference)

    def encode(self, records: list[dict], tokenizer: Any, data: DataConfig) -> list[dict]:
        from lmforge.data.preference import encode_prompts

        self.tokenizer = tokenizer
        return encode_prompts(records, tokenizer, data)

    def collate(self, features: list[dict], tokenizer: Any) -> dict[str, Any]:
        from lmforge.data.preference import collate_prompts

        self.tokenizer = tokenizer
        return collate_prompts(features, pad_token_id(tokenizer))

    def count(self, batch: dict[str, Any]) -> int:
        """Completions the loss averages over: prompts x group_size."""
        return int(batch["input_ids"].shape[0]) * self.params.group_size

    def rewards(self, prompts: list[str], completions: list[str], references: list[str], device) -> torch.Tensor:
        """(N,) fp32 rewards of the completions."""
        if self.scorer is not None:
            values = self.scorer(prompts, completions, device)
        else:
            values = []
            for prompt, completion, reference in zip(prompts, completions, references):
                try:
                    values.append(float(self.reward_fn(prompt, completion, reference)))
                except Exception as exc:  # the user's code: say whose it is
                    raise UserError(f"the reward function raised {type(exc).__name__}: {exc}",
                                    where="objective.reward") from exc
        return torch.tensor(values, dtype=torch.float32, device=device)

    def sample(self, model: nn.Module, batch: dict[str, Any], k: int, greedy: bool = False) -> dict[str, Any]:
        """k completions per prompt: returns ids / mask / position_ids / labels (N, P+L) and texts, N = B k."""
        if self.tokenizer is None:
            raise RuntimeError("GRPO needs the tokenizer: call encode(), collate() or bind() first")
        prompt_ids = batch["input_ids"].repeat_interleave(k, dim=0)
        prompt_mask = batch["attention_mask"].repeat_interleave(k, dim=0)
        stops = stop_token_ids(self.tokenizer, model)
        pad = pad_token_id(self.tokenizer)
        sampling = GREEDY if greedy else Sampling(self.params.temperature, self.params.top_p)
        # the runtime's autocast (if any) is already active around loss(); no second precision choice here
        results = generate_tokens(model, [row[m.bool()].tolist() for row, m in zip(prompt_ids, prompt_mask)],
                                  max_new_tokens=self.params.max_new_tokens, stop_ids=stops, pad_id=pad,
                                  sampling=sampling, batch_size=prompt_ids.shape[0], precision="model")
        width = max(len(r.all_tokens) for r in results)
        completions = torch.tensor([r.all_tokens + [pad] * (width - len(r.all_tokens)) for r in results],
                                   dtype=prompt_ids.dtype, device=prompt_ids.device)
        mask = completion_mask(completions, stops)
        texts = [self.tokenizer.decode(row[m], skip_special_tokens=True).strip() for row, m in zip(completions, mask)]
        ids = torch.cat([prompt_ids, completions], dim=1)
        attention = torch.cat([prompt_mask, mask.long()], dim=1)
        labels = torch.where(torch.cat([torch.zeros_like(prompt_mask, dtype=torch.bool), mask], dim=1), ids, IGNORE)
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": ids, "attention_mask": attention, "labels": labels, "position_ids": position_ids,
                "texts": texts}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> LossOutput:
        """Sum over the B k completions of their token-mean GRPO loss, and B k."""
        k = self.params.group_size
        sample = self.sample(model, batch, k)
        prompts = [p for p in batch["prompts"] for _ in range(k)]
        references = [r for r in batch["references"] for _ in range(k)]
        rewards = self.rewards(prompts, sample["texts"], references, batch["input_ids"].device)
        advantages = group_advantages(rewards.view(-1, k)).view(-1)
        logps, mask = token_logps(model, sample["input_ids"], sample["attention_mask"], sample["labels"],
                                  position_ids=sample["position_ids"])
        per_token = clipped_objective(logps, logps.detach(), advantages, self.params.clip)
        if self.params.beta > 0:
            ref = self.reference.token_logps(model, sample["input_ids"], sample["attention_mask"], sample["labels"],
                                             position_ids=sample["position_ids"])
            delta = ref - logps
            per_token = per_token + self.params.beta * (torch.exp(delta) - delta - 1)
        per_completion = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return LossOutput(total=per_completion.sum(), count=per_completion.shape[0],
                          logs={"reward_mean": float(rewards.mean())})

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: dict[str, Any]) -> EvalOutput:
        """Greedy answer per prompt, rewarded; loss = -reward (so eval_loss = -reward_mean)."""
        sample = self.sample(model, batch, 1, greedy=True)
        rewards = self.rewards(batch["prompts"], sample["texts"], batch["references"], batch["input_ids"].device)
        return EvalOutput(loss_total=-float(rewards.sum()), count=len(sample["texts"]),
                          predictions=[], scores=[[float(r)] for r in rewards], rows=per_row(-rewards))

    def eval_metrics(self, outputs: list[EvalOutput]) -> dict[str, float]:
        """reward_mean: mean reward of the greedy answers to the held-out prompts."""
        rows = [row for o in outputs for row in o.scores]
        return {"reward_mean": sum(r[0] for r in rows) / len(rows)} if rows else {}
