"""The parts of a loaded causal LM that training code reaches for: the model inside a method's
wrapper, and its decoder body and output head.

Methods may wrap the transformers model (peft's ``PeftModel``); peft is used through its public
wrapper API here (``get_base_model()``, ``active_peft_config.is_prompt_learning``), in this one
place, so objectives and the training loop never sniff wrappers themselves.
"""

from __future__ import annotations

from torch import nn

from lmforge.model.task import TaskInfo

# Config attributes of architectures that transform logits after the output projection.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "logit_softcapping")


def inner_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a wrapper (``get_base_model()``), else ``model`` itself."""
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        return model.get_base_model()
    return model


def adds_positions(model: nn.Module) -> bool:
    """True when the wrapper's forward prepends virtual tokens (prompt learning), so the inner model's
    body and head alone do not compute the wrapped model's logits."""
    if not (hasattr(model, "peft_config") and hasattr(model, "get_base_model")):
        return False
    active = getattr(model, "active_peft_config", None)
    return active is None or bool(getattr(active, "is_prompt_learning", False))


def find_body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(decoder body returning ``last_hidden_state``, output projection) of a causal LM, or None.

    Unwraps a method's wrapper (:func:`inner_model`; LoRA layers live inside the base modules, so
    the body and head found there include them). None when the split would change the math:
    wrappers that prepend virtual tokens, logit soft-capping/scaling, or no separable decoder.
    """
    if adds_positions(model):
        return None
    base = inner_model(model)
    if not hasattr(base, "get_output_embeddings") or not hasattr(base, "get_decoder"):
        return None
    config = getattr(base, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if any(getattr(text_config, name, None) not in (None, 1, 1.0) for name in LOGIT_TRANSFORMS):
        return None
    head = base.get_output_embeddings()
    body = base.get_decoder()
    if head is None or body is None or body is base:
        return None
    return body, head


def task_of(model: nn.Module) -> TaskInfo:
    """The head ``model`` carries: sequence classification with its config's label names when its
    class is a ``*ForSequenceClassification``, else causal LM."""
    inner = inner_model(model)
    if type(inner).__name__.endswith("ForSequenceClassification"):
        id2label = getattr(inner.config, "id2label", None) or {}
        labels = tuple(str(id2label[i]) for i in sorted(id2label))
        return TaskInfo("sequence_classification", len(labels), labels)
    return TaskInfo("causal_lm")
