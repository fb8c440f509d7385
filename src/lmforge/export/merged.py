"""Export a merged, plain transformers model folder (safetensors + tokenizer with its chat template)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmforge.atomic import atomic_dir
from lmforge.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def export_merged(method: Any, model: nn.Module, tokenizer: Any, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Fold the trained weights into the base and save a folder plain transformers loads.

    method: the run's method (``method.merge(model)`` returns a plain ``PreTrainedModel``;
    methods whose spec says ``mergeable=False`` are refused with a UserError).
    model: the trained model; it is left unchanged (the merge runs on a deep copy, so the
    export needs memory for a second copy of the model).
    dtype: "float32" | "bfloat16" | "float16", the dtype of the saved weights.
    out_dir: gets ``config.json``, ``model.safetensors``, ``generation_config.json`` (greedy
    decoding stops at eos and the chat template's end-of-turn token) and the tokenizer files
    (chat template and special tokens kept). Written atomically; returns ``out_dir``.
    """
    if not method.spec.mergeable:
        raise UserError(f"method '{method.spec.name}' cannot be merged into the base model", where="export.merged",
                        hint="set export.merged: false and use the exported adapter folder")
    if dtype not in DTYPES:
        raise UserError(f"unknown export dtype '{dtype}'", where="export.dtype", hint=f"one of {', '.join(DTYPES)}")
    merged = method.merge(copy.deepcopy(model))
    if not hasattr(merged, "save_pretrained") or hasattr(merged, "peft_config"):
        raise TypeError(f"{type(method).__name__}.merge returned {type(merged).__name__}, not a plain transformers model")
    merged = merged.to(DTYPES[dtype]).eval()
    _set_stop_tokens(merged, tokenizer)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


def _set_stop_tokens(model: nn.Module, tokenizer: Any) -> None:
    """Make plain ``model.generate`` stop where lmforge's sample generations stop."""
    config = getattr(model, "generation_config", None)
    can_generate = getattr(model, "can_generate", lambda: False)()
    if config is None or not can_generate:
        return
    from lmforge.evaluate.generate import stop_token_ids

    stops = stop_token_ids(tokenizer, model)
    if stops:
        config.eos_token_id = stops[0] if len(stops) == 1 else stops
    if config.pad_token_id is None and getattr(tokenizer, "pad_token_id", None) is not None:
        config.pad_token_id = tokenizer.pad_token_id
