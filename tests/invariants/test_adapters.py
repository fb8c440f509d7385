"""Adapter invariants: a fresh LoRA is a no-op; a disabled adapter is exactly the base model."""

from __future__ import annotations

import pytest
import torch

from lmforge.methods import METHODS, build_method
from tests.contracts.cases import fresh_base, logits, make_batch, task_for

HEADS = ("causal_lm", "sequence_classification")


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _lora(**params):
    return build_method("lora", METHODS["lora"].params.model_validate({"r": 4, "dropout": 0.0, **params}))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("variant", [{}, {"use_dora": True}, {"use_rslora": True}])
def test_fresh_lora_leaves_outputs_unchanged(head, variant, dirs):
    batch = make_batch(head, dirs)
    base = fresh_base(head, dirs)
    expected = logits(base, batch)
    model = _lora(**variant).apply(base, task_for(head))
    torch.testing.assert_close(logits(model, batch), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("head", HEADS)
def test_disabled_adapter_reproduces_base_after_training(head, dirs):
    batch = make_batch(head, dirs)
    expected = logits(fresh_base(head, dirs), batch)
    model = _lora().apply(fresh_base(head, dirs), task_for(head))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    trained = logits(model, batch)
    assert not torch.allclose(trained, expected, atol=1e-4), "training did not move the adapter"
    with model.disable_adapter():
        torch.testing.assert_close(logits(model, batch), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(logits(model, batch), trained, rtol=0, atol=0)
