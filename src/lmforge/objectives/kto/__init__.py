"""KTO on unpaired good / bad answers (ratings, or preference pairs split in two)."""

from lmforge.objectives.kto.config import KTOParams
from lmforge.objectives.registry import ObjectiveSpec, register_objective

register_objective(
    ObjectiveSpec(
        name="kto",
        params=KTOParams,
        factory="lmforge.objectives.kto.objective:KTOObjective",
        kinds=("pairs", "labelled"),
        head="causal_lm",
        default_metric="eval_loss",
        metric_mode="min",
        metrics=("eval_loss", "reward_accuracy", "reward_margin", "reward_desirable", "reward_undesirable"),
        summary="KTO: learn from single answers rated good or bad (ratings: classification data text/text_pair/label).",
    )
)
