"""Activation checkpointing of selected decoder layers, through transformers' public API.

transformers 5 renamed gradient checkpointing to activation checkpointing
(``PreTrainedModel.activation_checkpointing_enable``); each repeated block is a
``GradientCheckpointingLayer`` whose public ``gradient_checkpointing`` flag decides whether it is
recomputed in backward. We turn checkpointing on for the whole model with the non-reentrant
``torch.utils.checkpoint`` (works with frozen inputs, LoRA, and no ``enable_input_require_grads``)
and then switch the flag off on the layers the user did not select.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from lmforge.model.parts import inner_model

Layers = Literal["all"] | int | list[int]


def enable_activation_checkpointing(model: nn.Module, layers: Layers = "all") -> list[int]:
    """Recompute the activations of the selected decoder layers in backward instead of storing them.

    Args:
        model: a transformers ``PreTrainedModel`` or a PEFT wrapper around one.
        layers: ``"all"``; an int ``k`` = every k-th layer (0, k, 2k, ...); or a list of layer
            indices (0-based, in model order; negative indices count from the end).

    Returns:
        The sorted indices of the layers that are checkpointed.

    Raises:
        ValueError: the model has no checkpointable layers, ``k < 1``, or an index is out of range.
    """
    base = inner_model(model)
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(base).__name__} does not support activation checkpointing")
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    blocks = checkpointable_layers(base)
    if not blocks:
        raise ValueError(f"{type(base).__name__} has no checkpointable layers")
    chosen = _select(layers, len(blocks))
    for i, block in enumerate(blocks):
        block.gradient_checkpointing = i in chosen
    return sorted(chosen)


def disable_activation_checkpointing(model: nn.Module) -> None:
    """Store all activations again (undoes ``enable_activation_checkpointing``)."""
    inner_model(model).activation_checkpointing_disable()


def checkpointable_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks (``GradientCheckpointingLayer`` instances) of ``model``, in order."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in inner_model(model).modules() if isinstance(m, GradientCheckpointingLayer)]


def _select(layers: Layers, n: int) -> set[int]:
    """Resolve the ``layers`` spec into a set of indices in ``range(n)``."""
    if layers == "all":
        return set(range(n))
    if isinstance(layers, bool):
        raise ValueError("layers must be 'all', an int k (every k-th layer) or a list of indices")
    if isinstance(layers, int):
        if layers < 1:
            raise ValueError(f"every-k layer selection needs k >= 1, got {layers}")
        return set(range(0, n, layers))
    chosen = set()
    for i in layers:
        if not -n <= i < n:
            raise ValueError(f"layer index {i} out of range for a model with {n} layers")
        chosen.add(i % n)
    return chosen
