"""Packed (varlen) causal attention for CPU training: one causal SDPA call per packed sequence.

transformers 5 handles a padding-free packed row (``position_ids`` restarting per example, no
``attention_mask``, no cache) by building a ``T x T`` block-diagonal boolean mask and running sdpa
on it: every layer then computes all ``T**2`` query-key scores of the row, most of them masked
(a row of 8 examples of 64-512 tokens has ~2300 tokens: 8x the scores that count), and the CPU
flash kernel cannot skip the masked blocks of an explicit mask. This module registers an
attention implementation through transformers' public registries (``AttentionInterface`` and
``AttentionMaskInterface``, see "Attention Interface" in the transformers docs) that

- builds no ``T x T`` mask: for such a row its mask function returns the ``(B, T)`` segment ids
  (read from the mask transformers itself composed, so packed-sequence detection stays
  upstream's), and
- runs ``scaled_dot_product_attention(..., is_causal=True)`` on each segment alone: the flash CPU
  kernel skips the upper triangle, and only ``sum(L_i**2)/2`` scores are computed.

Every other case (a padding ``attention_mask``, a KV cache, a query shorter than the keys) gets
the exact sdpa mask and sdpa kernel, so generation and padded evaluation are unchanged. Only model
families whose attention is plain causal self-attention are switched (:data:`SUPPORTED_MODEL_TYPES`,
no sliding window, chunked attention or soft-capping); the rest keep their implementation.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

PACKED_ATTENTION = "lmforge_packed_sdpa"
# Plain causal self-attention through the AttentionInterface; each one tested in-process
# (tests/invariants/test_packing_isolation.py: packed == alone, gradients == sdpa).
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
# Config attributes that make attention other than plain causal when set (sliding_window only
# counts where the config does not switch it off with use_sliding_window: false, as Qwen2's do).
_NON_CAUSAL_ATTRS = ("sliding_window", "attention_chunk_size", "attn_logit_softcapping", "use_bidirectional_attention")


def packed_segments_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                         mask_function: Callable | None = None, attention_mask: torch.Tensor | None = None,
                         **kwargs: Any) -> torch.Tensor | None:
    """Mask function of :data:`PACKED_ATTENTION` (an ``AttentionMaskInterface`` entry).

    Without a padding mask or cache offset, returns ``(B, T)`` int32 segment ids (or None for
    one segment per row): a position starts a new segment where transformers' own mask function
    hides the previous position from it. Otherwise the 4D boolean mask sdpa would get.
    """
    from transformers.masking_utils import sdpa_mask

    plain = attention_mask is None and q_length == kv_length and q_offset == 0 and kv_offset == 0
    if not plain or mask_function is None or q_length < 2:
        return sdpa_mask(batch_size, q_length, kv_length, q_offset, kv_offset, mask_function=mask_function,
                         attention_mask=attention_mask, **kwargs)
    device = kwargs.get("device", "cpu")
    rows = torch.arange(batch_size, device=device)[:, None]
    q = torch.arange(1, q_length, device=device)[None, :]
    sees_previous = mask_function(rows, torch.zeros_like(rows), q, q - 1)  # (B, T-1) bool
    sees_previous = torch.as_tensor(sees_previous, device=device).expand(batch_size, q_length - 1)
    if bool(sees_previous.all()):
        return None  # one causal sequence per row: sdpa's is_causal path
    starts = torch.cat([torch.zeros(batch_size, 1, dtype=torch.int32, device=device),
                        (~sees_previous).to(torch.int32)], dim=1)
    return starts.cumsum(dim=1, dtype=torch.int32)


def packed_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                             **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention function of :data:`PACKED_ATTENTION` (an ``AttentionInterface`` entry).

    ``query`` (B, H, T, D), ``key`` / ``value`` (B, Hkv, T, D). With ``(B, T)`` segment ids from
    :func:`packed_segments_mask`: causal attention inside each segment only, one SDPA call per
    segment; returns ``(B, T, H, D)`` like transformers' sdpa function. Anything else is passed to
    transformers' sdpa function unchanged.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is None or attention_mask.ndim != 2:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    gqa = key.shape[1] != query.shape[1]
    rows = []
    for b, bounds in enumerate(segment_bounds(attention_mask)):
        # split (not slice) per segment: its backward is one concatenation, where slicing would
        # zero-fill and add a full-size gradient per segment
        lengths = [e - s for s, e in bounds]
        q, k, v = (t if t.shape[0] == 1 else t[b:b + 1] for t in (query, key, value))
        parts = [F.scaled_dot_product_attention(qs, ks, vs, dropout_p=dropout, is_causal=True, scale=scaling,
                                                enable_gqa=gqa).transpose(1, 2)
                 for qs, ks, vs in zip(q.split(lengths, dim=2), k.split(lengths, dim=2), v.split(lengths, dim=2))]
        rows.append(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0].contiguous())
    return (torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]), None


def segment_bounds(segment_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """``(B, T)`` non-decreasing segment ids -> per row the ``(start, end)`` of each segment."""
    length = segment_ids.shape[1]
    changes = (segment_ids[:, 1:] != segment_ids[:, :-1]).nonzero().tolist()
    starts: list[list[int]] = [[0] for _ in range(segment_ids.shape[0])]
    for row, t in changes:
        starts[row].append(t + 1)
    return [list(zip(s, s[1:] + [length])) for s in starts]


def register_packed_attention() -> str:
    """Register :data:`PACKED_ATTENTION` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_attention_forward)
    AttentionMaskInterface.register(PACKED_ATTENTION, packed_segments_mask)
    return PACKED_ATTENTION


def packed_attention_support(model: nn.Module) -> tuple[bool, str]:
    """Whether ``model`` (a transformers model or PEFT wrapper) can switch to packed attention, and why not."""
    base = _transformers_model(model)
    if base is None or not hasattr(base, "set_attn_implementation"):
        return False, "not a transformers model"
    config = base.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return False, f"model type {getattr(text, 'model_type', None)!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}"
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False, f"attention implementation is {getattr(config, '_attn_implementation', None)!r}, not sdpa"
    for name in _NON_CAUSAL_ATTRS:
        off = name == "sliding_window" and getattr(text, "use_sliding_window", True) is False
        if getattr(text, name, None) not in (None, False) and not off:
            return False, f"config sets {name}"
    if any(t != "full_attention" for t in (getattr(text, "layer_types", None) or [])):
        return False, "config has non-full attention layers"
    return True, ""


def use_packed_attention(model: nn.Module) -> str | None:
    """Switch ``model`` to :data:`PACKED_ATTENTION` when supported; return the implementation
    to restore afterwards (:func:`restore_attention`), or None when nothing was changed."""
    ok, _why = packed_attention_support(model)
    if not ok:
        return None
    base = _transformers_model(model)
    previous = base.config._attn_implementation
    base.set_attn_implementation(register_packed_attention())
    return previous


def restore_attention(model: nn.Module, previous: str | None) -> None:
    """Undo :func:`use_packed_attention` (no-op for None)."""
    if previous is not None:
        _transformers_model(model).set_attn_implementation(previous)


def _transformers_model(model: nn.Module) -> Any:
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        return model.get_base_model()
    return model
