from lmforge.objectives.causal_lm.config import CausalLMParams
from lmforge.objectives.registry import ObjectiveSpec, register_objective

register_objective(
    ObjectiveSpec(
        name="causal_lm",
        params=CausalLMParams,
        factory="lmforge.objectives.causal_lm.objective:CausalLMObjective",
        kinds=("text", "messages"),
        head="causal_lm",
        default_metric="eval_loss",
        metric_mode="min",
        metrics=("eval_loss", "perplexity"),
        can_pack=True,
        summary="Next-token prediction: instruction / chat SFT (loss on completions) or raw-text domain adaptation.",
    )
)
