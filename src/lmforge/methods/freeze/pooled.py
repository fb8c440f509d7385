"""Pooled-embedding classification heads on a frozen encoder, with an optional feature cache.

``PooledForSequenceClassification`` = encoder (the backbone of the loaded model) -> pooling over
the attention mask -> a small MLP -> logits. It returns a transformers
``SequenceClassifierOutput`` (``.loss`` / ``.logits`` / ``.hidden_states``), so the
classification objective, evaluation, the training loop and drift statistics use it unchanged.

While the encoder is completely frozen it runs under ``torch.no_grad`` and stays in eval mode
(its dropout is off even while the head trains: a frozen feature extractor is deterministic,
which is also what makes cached features exact). ``FeatureCache`` keeps one pooled vector per
distinct input, keyed by the exact bytes of its unpadded token ids (and token type ids): the
second epoch (and every evaluation after the first) skips the encoder entirely.
Memory: about ``n_inputs x hidden x 4`` bytes of features plus ``n_inputs x tokens x 8`` bytes
of keys (e.g. 10,000 reviews on MiniLM, hidden 384, 128 tokens: 15 MB + 10 MB), bounded by
``limit`` inputs (inputs past the limit are computed each time, never evicted: training scans
the data cyclically, where eviction would only turn every hit into a miss).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("mean", "cls", "last")


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """hidden (B, T, H), mask (B, T) of 0/1 -> (B, H).

    mean: average over positions where mask is 1 (an all-zero row gives zeros); cls: the first
    position where mask is 1; last: the last one (left or right padding alike).
    """
    if how == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    if how not in POOLINGS:
        raise ValueError(f"unknown pooling {how!r}; one of {POOLINGS}")
    real = mask.long()
    if how == "cls":
        index = real.argmax(1)
    else:
        index = real.shape[1] - 1 - real.flip(1).argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def build_head(hidden_size: int, num_labels: int, head_hidden: int, dropout: float) -> nn.Sequential:
    """dropout -> linear (H -> C), or dropout -> linear (H -> h) -> GELU -> dropout -> linear (h -> C)."""
    if head_hidden == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, num_labels))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, head_hidden), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(head_hidden, num_labels))


class FeatureCache:
    """Pooled features by input. ``hits`` / ``misses`` count looked-up rows; ``limit`` bounds entries."""

    def __init__(self, limit: int = 200_000):
        self.limit = limit
        self.rows: dict[bytes, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        """Bytes held by cached features and keys."""
        return sum(v.numel() * v.element_size() + len(k) for k, v in self.rows.items())

    @staticmethod
    def keys(input_ids: torch.Tensor, mask: torch.Tensor, token_type_ids: torch.Tensor | None) -> list[bytes]:
        """One key per row: the bytes of its unpadded ids (+ unpadded token type ids)."""
        ids, real = input_ids.detach().cpu().long(), mask.detach().cpu().bool()
        types = token_type_ids.detach().cpu().long() if token_type_ids is not None else None
        out = []
        for i in range(ids.shape[0]):
            key = ids[i][real[i]].numpy().tobytes()
            if types is not None:
                key += b"|" + types[i][real[i]].numpy().tobytes()
            out.append(key)
        return out

    def get(self, key: bytes) -> torch.Tensor | None:
        value = self.rows.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: bytes, value: torch.Tensor) -> None:
        if len(self.rows) < self.limit:
            self.rows[key] = value.detach().clone()


class PooledForSequenceClassification(nn.Module):
    """Encoder + pooling + MLP head; ``forward`` takes a tokenized batch like a transformers classifier.

    encoder: a transformers backbone (``BertModel``, ``LlamaModel`` ...) returning
    ``last_hidden_state`` (B, T, H). config: the loaded model's config (``id2label``,
    ``hidden_size``; kept as ``.config`` for evaluation / serving). cache: a ``FeatureCache``
    (only while the encoder has no trainable parameter) or None.
    """

    def __init__(self, encoder: nn.Module, config, *, num_labels: int, pooling: str = "mean",
                 head_hidden: int = 0, dropout: float = 0.0, cache: FeatureCache | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; one of {POOLINGS}")
        self.encoder = encoder
        self.config = config
        self.pooling = pooling
        self.head = build_head(int(config.hidden_size), num_labels, head_hidden, dropout)
        self.cache = cache

    @property
    def encoder_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.encoder.parameters())

    def train(self, mode: bool = True):
        """Head follows ``mode``; a completely frozen encoder stays in eval mode (no dropout)."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def encode(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False):
        """Run the encoder (no cache); returns its output (``last_hidden_state`` (B, T, H))."""
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=output_hidden_states, **kwargs)

    def features(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """Pooled encoder features (B, H), from the cache where it has them."""
        frozen = self.encoder_frozen
        if self.cache is not None and not frozen:
            raise RuntimeError("cached features need a completely frozen encoder (method.last_layers: 0)")
        with torch.no_grad() if frozen else contextlib.nullcontext():
            if self.cache is None:
                out = self.encode(input_ids, attention_mask, token_type_ids)
                return pool(out.last_hidden_state, attention_mask, self.pooling)
            return self._cached_features(input_ids, attention_mask, token_type_ids)

    def _cached_features(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        keys = FeatureCache.keys(input_ids, attention_mask, token_type_ids)
        found = [self.cache.get(k) for k in keys]
        missing = [i for i, value in enumerate(found) if value is None]
        if missing:
            rows = torch.tensor(missing, device=input_ids.device)
            mask = attention_mask[rows]
            cols = mask.bool().any(0)  # drop columns that are padding in every missing row
            types = token_type_ids[rows][:, cols] if token_type_ids is not None else None
            out = self.encode(input_ids[rows][:, cols], mask[:, cols], types)
            fresh = pool(out.last_hidden_state, mask[:, cols], self.pooling)
            for j, i in enumerate(missing):
                found[i] = fresh[j]
                self.cache.put(keys[i], fresh[j])
        return torch.stack([value.to(input_ids.device) for value in found])

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_hidden_states: bool = False, **_ignored) -> SequenceClassifierOutput:
        """input_ids / attention_mask / token_type_ids (B, T); labels (B,) optional -> logits (B, C).

        ``output_hidden_states`` runs the encoder uncached and returns its hidden states.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden_states = None
        if output_hidden_states:
            with torch.no_grad() if self.encoder_frozen else contextlib.nullcontext():
                out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states=True)
            hidden_states = out.hidden_states
            pooled = pool(out.last_hidden_state, attention_mask, self.pooling)
        else:
            pooled = self.features(input_ids, attention_mask, token_type_ids)
        logits = self.head(pooled.float())
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)
