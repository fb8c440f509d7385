"""Reward model on preference pairs: a scalar head trained with the Bradley-Terry loss."""

from lmforge.objectives.registry import ObjectiveSpec, register_objective
from lmforge.objectives.reward.config import RewardParams

register_objective(
    ObjectiveSpec(
        name="reward",
        params=RewardParams,
        factory="lmforge.objectives.reward.objective:RewardObjective",
        kinds=("pairs",),
        head="sequence_classification",
        default_metric="eval_loss",
        metric_mode="min",
        metrics=("eval_loss", "pairwise_accuracy", "reward_margin", "reward_chosen", "reward_rejected"),
        summary="Reward model: scalar score per answer, Bradley-Terry loss on chosen/rejected pairs.",
    )
)
