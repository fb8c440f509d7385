"""Batches: right-pad features to the longest in the batch and stack them as torch.long tensors.

torch is imported on first use, so ``import lmforge.data`` stays light (e.g. for ``lmforge data prepare``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

IGNORE = -100


def _pad(rows: list[list[int]], value: int, width: int) -> torch.Tensor:
    import torch

    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def collate_causal(features: list[dict], pad_id: int | None) -> dict[str, torch.Tensor]:
    """``[{"input_ids", "labels"}]`` -> ``{"input_ids", "attention_mask", "labels"}``, each (batch, longest).

    Padding: ``pad_id`` (0 when None; masked out anyway) in input_ids, 0 in attention_mask, -100 in labels.
    """
    width = max(len(f["input_ids"]) for f in features)
    ids = [f["input_ids"] for f in features]
    return {
        "input_ids": _pad(ids, 0 if pad_id is None else pad_id, width),
        "attention_mask": _pad([[1] * len(r) for r in ids], 0, width),
        "labels": _pad([f["labels"] for f in features], IGNORE, width),
    }


def collate_classification(features: list[dict], pad_id: int | None) -> dict[str, torch.Tensor]:
    """``[{"input_ids", "label", ("token_type_ids")}]`` -> padded (batch, longest) tensors + labels (batch,).

    Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the features have them,
    padded with 0) and ``labels``.
    """
    width = max(len(f["input_ids"]) for f in features)
    ids = [f["input_ids"] for f in features]
    batch = {
        "input_ids": _pad(ids, 0 if pad_id is None else pad_id, width),
        "attention_mask": _pad([[1] * len(r) for r in ids], 0, width),
    }
    if all("token_type_ids" in f for f in features):
        batch["token_type_ids"] = _pad([f["token_type_ids"] for f in features], 0, width)
    import torch

    batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
    return batch
