"""What head a run needs on its base model. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInfo:
    """What the objective needs from the model.

    head: "causal_lm" (AutoModelForCausalLM) or "sequence_classification"
        (AutoModelForSequenceClassification).
    num_labels / labels: the classification label set (index = class id), else None.
    tasks: multi-task classification: ``((task name, labels), ...)``, one head per task on a
        shared encoder (``lmforge.model.multihead``); None for one head.
    """

    head: str
    num_labels: int | None = None
    labels: tuple[str, ...] | None = None
    tasks: tuple[tuple[str, tuple[str, ...]], ...] | None = None
