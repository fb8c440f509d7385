"""`lmforge methods`: every registered method, what it trains, its capabilities, default lr and guidance."""

from __future__ import annotations

from lmforge.errors import UserError


def describe_methods(model_name: str | None = None, num_labels: int | None = None) -> str:
    """A table of every registered method (+ trainable-parameter counts on ``model_name``)."""
    from lmforge.methods import METHODS

    counts: dict[str, str] = {}
    if model_name:
        counts = trainable_counts(model_name, num_labels)
    lines = []
    for name, spec in sorted(METHODS.items()):
        caps = ["mergeable" if spec.mergeable else "not mergeable (exported on its own)"]
        if spec.quantized_base:
            caps.append("quantized base")
        caps.append("objectives: " + (", ".join(spec.objectives) if spec.objectives else "all"))
        lines.append(f"{name}\n  trains:   {spec.trains}\n  can:      {'; '.join(caps)}\n"
                     f"  lr:       {spec.default_lrs()} (default when train.lr is not set)")
        if spec.classification_epochs is not None:
            lines.append(f"  epochs:   {spec.classification_epochs:g} on classification (default when train.epochs "
                         "is not set; 1 elsewhere)")
        if name in counts:
            lines.append(f"  params:   {counts[name]}")
        if spec.guidance:
            lines.append(f"  guidance: {spec.guidance}")
    return "\n".join(lines)


def trainable_counts(model_name: str, num_labels: int | None) -> dict[str, str]:
    from lmforge.config import ModelConfig
    from lmforge.methods import METHODS, build_method
    from lmforge.methods.base import count_parameters
    from lmforge.model import load_model
    from lmforge.model.task import TaskInfo

    task = (TaskInfo("sequence_classification", num_labels, tuple(f"label_{i}" for i in range(num_labels)))
            if num_labels else TaskInfo("causal_lm"))
    out = {}
    for name, spec in sorted(METHODS.items()):
        try:
            method = build_method(name, spec.params())
            model = method.apply(load_model(ModelConfig(name=model_name), task, **method.load_kwargs()), task)
        except UserError as exc:
            out[name] = f"n/a ({str(exc).splitlines()[0]})"
            continue
        trainable, total = count_parameters(model)
        out[name] = f"{trainable:,} trainable of {total:,} ({100 * trainable / max(total, 1):.2f}%)"
    return out
