"""GRPO: online RL with group-normalised advantages and rewards from a function or reward model."""

from lmforge.objectives.grpo.config import GRPOParams
from lmforge.objectives.registry import ObjectiveSpec, register_objective

register_objective(
    ObjectiveSpec(
        name="grpo",
        params=GRPOParams,
        factory="lmforge.objectives.grpo.objective:GRPOObjective",
        kinds=("messages",),
        head="causal_lm",
        default_metric="reward_mean",
        metric_mode="max",
        metrics=("eval_loss", "reward_mean"),
        summary="GRPO: sample k answers per prompt, reward them (function or reward model), reinforce the better ones.",
    )
)
