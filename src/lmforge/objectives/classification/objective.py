"""Sequence classification objective: cross-entropy over a linear head, one unit per example.

Features are ``{"input_ids": list[int], "label": int, optional "token_type_ids"}`` from
``lmforge.data.encode_classification``; batches carry ``labels`` (B,) class ids.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.config.schema import DataConfig
from lmforge.model.task import TaskInfo
from lmforge.objectives.base import EvalOutput, LossOutput, ObjectiveBase, per_row
from lmforge.objectives.registry import ObjectiveParams, ObjectiveSpec


class ClassificationObjective(ObjectiveBase):
    """Sum of (optionally label-smoothed) CE over the batch; ``count`` = batch size."""

    def __init__(self, spec: ObjectiveSpec, params: ObjectiveParams):
        super().__init__(spec, params)
        self.labels: list[str] | None = None  # set by task_info; encode maps labels to these ids

    def task_info(self, labels: list[str] | None, model_config: Any | None = None) -> TaskInfo:
        if not labels:
            raise ValueError("classification needs the label set (see lmforge.data.label_set)")
        self.labels = list(labels)
        return TaskInfo(head="sequence_classification", num_labels=len(labels), labels=tuple(labels))

    def encode(self, records: list[dict], tokenizer: Any, data: DataConfig, labels: list[str] | None = None) -> list[dict]:
        """Features with class ids from ``labels``, else the set given to ``task_info`` (so train
        and eval splits share one mapping), else the labels of ``records``."""
        from lmforge.data.encode import encode_classification, label_set

        chosen = labels or self.labels or label_set(records, data)
        return encode_classification(records, tokenizer, data, chosen)

    def collate(self, features: list[dict], tokenizer: Any) -> dict[str, torch.Tensor]:
        from lmforge.data.collate import collate_classification

        pad = getattr(tokenizer, "pad_token_id", None)
        return collate_classification(features, 0 if pad is None else int(pad))

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """Examples in ``batch``."""
        return int(batch["labels"].shape[0])

    def _logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits.float()  # (B, num_labels)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Sum over the batch of CE(logits (B, C), labels (B,)) with ``params.label_smoothing``."""
        logits = self._logits(model, batch)
        smoothing = float(self.params.label_smoothing)
        total = F.cross_entropy(logits, batch["labels"], reduction="sum", label_smoothing=smoothing)
        return LossOutput(total=total, count=int(batch["labels"].shape[0]))

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> EvalOutput:
        """Unsmoothed CE sum, argmax predictions, gold references and softmax probabilities."""
        logits = self._logits(model, batch)
        labels = batch["labels"]
        losses = F.cross_entropy(logits, labels, reduction="none")
        return EvalOutput(
            loss_total=float(losses.sum()),
            count=int(labels.shape[0]),
            rows=per_row(losses),
            predictions=logits.argmax(dim=-1).tolist(),
            references=labels.tolist(),
            scores=torch.softmax(logits, dim=-1).tolist(),
        )
