"""A trained-looking LoRA model on the tiny Llama: the real LoraMethod with non-zero adapter weights."""

from __future__ import annotations

import pytest
import torch


def lora_model(model_dir, seed: int = 0):
    """(method, peft model) with random lora_B (peft starts it at zero, which would hide merge bugs)."""
    from transformers import AutoModelForCausalLM

    from lmforge.methods import METHODS, build_method
    from lmforge.model.task import TaskInfo

    method = build_method("lora", METHODS["lora"].params(r=4, alpha=8, dropout=0.0))
    model = method.apply(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), TaskInfo("causal_lm"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return method, model.eval()


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture
def ids():
    return torch.tensor([[1, 20, 30, 40, 50, 60, 2]])
