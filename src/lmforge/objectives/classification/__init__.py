from lmforge.objectives.classification.config import ClassificationParams
from lmforge.objectives.registry import ObjectiveSpec, register_objective

register_objective(
    ObjectiveSpec(
        name="classification",
        params=ClassificationParams,
        factory="lmforge.objectives.classification.objective:ClassificationObjective",
        kinds=("labelled",),
        head="sequence_classification",
        default_metric="f1_macro",
        metric_mode="max",
        metrics=("eval_loss", "accuracy", "precision_macro", "recall_macro", "f1_macro"),
        summary="Sequence classification with a linear head (e.g. sentiment); string labels mapped and stored.",
    )
)
