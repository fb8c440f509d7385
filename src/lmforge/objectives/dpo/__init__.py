"""The DPO family on preference pairs: dpo (sigmoid / ipo / hinge), simpo and orpo (reference-free)."""

from lmforge.objectives.dpo.config import DPOParams, ORPOParams, SimPOParams
from lmforge.objectives.registry import ObjectiveSpec, register_objective

PAIR_METRICS = ("eval_loss", "reward_accuracy", "reward_margin", "logps_chosen", "logps_rejected", "logps_accuracy")

for _name, _params, _cls, _summary in (
    ("dpo", DPOParams, "DPOObjective", "Direct preference optimisation (sigmoid / IPO / hinge) against the base model as reference."),
    ("simpo", SimPOParams, "SimPOObjective", "SimPO: reference-free preference tuning on length-normalised log-probs."),
    ("orpo", ORPOParams, "ORPOObjective", "ORPO: SFT on the chosen answer plus an odds-ratio preference term (reference-free)."),
):
    register_objective(
        ObjectiveSpec(
            name=_name,
            params=_params,
            factory=f"lmforge.objectives.dpo.objective:{_cls}",
            kinds=("pairs",),
            head="causal_lm",
            default_metric="eval_loss",
            metric_mode="min",
            metrics=PAIR_METRICS,
            summary=_summary,
        )
    )
