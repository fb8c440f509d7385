"""Shared preference test data and tiny-model helpers for the preference objective tests."""

from __future__ import annotations

from lmforge.config.schema import DataConfig, ModelConfig
from lmforge.model import load_model, load_tokenizer
from lmforge.objectives import build_objective, get_objective_spec

PAIRS = [
    {"prompt": "what is the capital of france", "chosen": "paris", "rejected": "the bank"},
    {"prompt": "hello", "chosen": "hi thanks", "rejected": "no"},
    {"prompt": "is this food good", "chosen": "yes it is great", "rejected": "i hate this"},
    {"prompt": "what is a bond", "chosen": "a loan with interest", "rejected": "a card"},
]
PREF_DATA = DataConfig(format="preference", train="pairs.jsonl", max_length=64)


def objective(name: str, **params):
    return build_objective(name, get_objective_spec(name).params(**params))


def tokenizer(model_dir):
    return load_tokenizer(ModelConfig(name=str(model_dir)))


def model(model_dir, obj):
    import torch

    torch.manual_seed(0)
    return load_model(ModelConfig(name=str(model_dir)), obj.task_info(None))
