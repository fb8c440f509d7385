"""Shared test cases for method contracts: which tiny model, task and batch each head uses."""

from __future__ import annotations

import torch

from lmforge.config.schema import ModelConfig
from lmforge.model.load import load_model, load_tokenizer
from lmforge.model.task import TaskInfo

LABELS = ("negative", "neutral", "positive")
TEXTS = ["the food is good", "what a terrible product", "the price is great", "i hate this one"]

# Non-default parameters a method needs to have anything to train on a tiny model; methods
# missing here are tested with their defaults.
CONTRACT_PARAMS = {
    "freeze": {"last_layers": 1},
    "lora": {"r": 4, "dropout": 0.0},
    "qlora": {"r": 4, "dropout": 0.0},
}


def task_for(head: str) -> TaskInfo:
    if head == "sequence_classification":
        return TaskInfo(head, num_labels=len(LABELS), labels=LABELS)
    return TaskInfo(head)


def model_config(head: str, dirs: dict) -> ModelConfig:
    return ModelConfig(name=str(dirs[head]))


def fresh_base(head: str, dirs: dict, **load_kwargs):
    """A freshly loaded tiny base model for ``head`` (same weights every call)."""
    torch.manual_seed(0)  # the classification head is newly initialised: keep it identical
    return load_model(model_config(head, dirs), task_for(head), **load_kwargs)


def make_batch(head: str, dirs: dict) -> dict[str, torch.Tensor]:
    """A padded batch with labels: next-token labels (pad = -100) or class ids."""
    tok = load_tokenizer(model_config(head, dirs))
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    batch = dict(enc)
    if head == "causal_lm":
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        batch["labels"] = labels
    else:
        batch["labels"] = torch.tensor([0, 1, 2, 1])
    return batch


def logits(model, batch) -> torch.Tensor:
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        return model(**inputs).logits.detach().clone()
