"""Prefix tuning through peft: trained past key/values for ``num_virtual_tokens`` positions.

``init: vocab`` (the default) starts the prefix from the keys and values the frozen model itself
computes for random vocabulary tokens, as Li & Liang (2021) recommend (initialising from real
words' activations): peft's default N(0, 1) prefix is far off the scale of real keys/values and
wrecks the untrained model (SmolLM2 on FiQA: held-out loss 3.4 -> 6.4 before any training), which
training then spends its budget undoing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lmforge.errors import UserError
from lmforge.methods.peft_wrap import PeftWrapMethod, task_type
from lmforge.methods.prefix_tuning.config import PrefixTuningParams
from lmforge.model.task import TaskInfo


def prefix_tuning_config(params: PrefixTuningParams, task: TaskInfo, model: nn.Module) -> Any:
    """The ``peft.PrefixTuningConfig`` for ``params``."""
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(
        task_type=task_type(task),
        num_virtual_tokens=params.num_virtual_tokens,
        prefix_projection=params.projection,
        encoder_hidden_size=params.projection_hidden_size,
    )


class PrefixTuningMethod(PeftWrapMethod):
    build_config = staticmethod(prefix_tuning_config)

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """The peft model, its prefix initialised from vocabulary key/values under ``init: vocab``."""
        peft_model = super().apply(model, task)
        if self.params.init_from_vocab:
            init_prefix_from_vocab(peft_model, self.params.num_virtual_tokens)
        return peft_model


@torch.no_grad()
def init_prefix_from_vocab(peft_model: nn.Module, num_virtual_tokens: int) -> torch.Tensor:
    """Load into ``peft_model``'s prefix the per-layer keys / values its frozen base computes for
    ``num_virtual_tokens`` token ids drawn uniformly from the vocabulary (torch's global RNG, which
    the run seeds). Decoders give them as their cache; encoders (no cache) through forward hooks on
    each attention layer's ``key`` / ``value`` projections. UserError when neither applies.
    Returns the token ids used, shape (1, num_virtual_tokens)."""
    from peft import initialize_kv_prefix_from_past_key_values

    base = peft_model.get_base_model()
    weight = base.get_input_embeddings().weight
    ids = torch.randint(0, weight.shape[0], (1, num_virtual_tokens), device=weight.device)
    # the base model alone: peft adds the prefix in PeftModel.forward, so calling the base skips it
    cache = _decoder_cache(base, ids) or _encoder_key_values(base, ids)
    initialize_kv_prefix_from_past_key_values(peft_model, past_key_values=cache)
    return ids


def _decoder_cache(base: nn.Module, ids: torch.Tensor):
    """The base's key/value cache after reading ``ids`` (None for a model that keeps none)."""
    if not getattr(base.config, "is_decoder", False) and not getattr(base.config, "use_cache", False):
        return None
    was_training = base.training
    base.eval()
    try:
        out = base(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    finally:
        base.train(was_training)
    cache = getattr(out, "past_key_values", None)
    return cache if cache is not None and len(cache) else None


def _encoder_key_values(base: nn.Module, ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(key, value)] per attention layer, each (1, heads, n, head_dim), from the outputs of the
    ``key`` / ``value`` linear projections of every self-attention module (BERT-style encoders)."""
    heads = base.config.num_attention_heads
    layers = [m for m in base.modules() if isinstance(getattr(m, "key", None), nn.Linear)
              and isinstance(getattr(m, "value", None), nn.Linear)]
    if not layers:
        raise UserError("prefix tuning cannot find this model's attention keys and values to start the prefix from",
                        where="method.init", hint="set method.init: random")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def split(x: torch.Tensor) -> torch.Tensor:  # (1, n, heads * head_dim) -> (1, heads, n, head_dim)
        return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)

    captured: dict[int, dict[str, torch.Tensor]] = {}
    handles = []
    for i, layer in enumerate(layers):
        for name in ("key", "value"):
            handles.append(getattr(layer, name).register_forward_hook(
                lambda _m, _a, out, i=i, name=name: captured.setdefault(i, {}).__setitem__(name, out)))
    was_training = base.training
    base.eval()
    try:
        base(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        base.train(was_training)
        for h in handles:
            h.remove()
    for i in range(len(layers)):
        seen.append((split(captured[i]["key"]), split(captured[i]["value"])))
    return seen
