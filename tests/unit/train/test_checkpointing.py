"""Activation checkpointing of selected layers leaves the gradients unchanged."""

from __future__ import annotations

import pytest
import torch

from lmforge.train.checkpointing import (
    checkpointable_layers,
    disable_activation_checkpointing,
    enable_activation_checkpointing,
)


def _grads(model, batch):
    model.zero_grad()
    model(**batch, use_cache=False).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _saved_tensors(model, batch) -> int:
    """Number of tensors autograd keeps for backward in one forward."""
    count = [0]

    def pack(t):
        count[0] += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**batch, use_cache=False)
    return count[0]


@pytest.mark.parametrize("layers, expected", [("all", [0, 1]), (2, [0]), ([-1], [1])])
def test_checkpointing_keeps_grads(tiny_llama_dir, layers, expected):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).train()
    ids = torch.randint(4, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "labels": ids}
    reference = _grads(model, batch)
    reference_saved = _saved_tensors(model, batch)
    assert enable_activation_checkpointing(model, layers) == expected
    assert [b.gradient_checkpointing for b in checkpointable_layers(model)] == [i in expected for i in range(2)]
    got = _grads(model, batch)
    # fewer tensors kept for backward: really checkpointed, more so with more layers
    assert _saved_tensors(model, batch) < reference_saved - 20 * len(expected) + 1
    assert got.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(got[name], reference[name], atol=1e-6, rtol=1e-5)
    disable_activation_checkpointing(model)
    assert not any(b.gradient_checkpointing for b in checkpointable_layers(model))


def test_checkpointing_through_peft_and_bad_spec(tiny_llama_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).train()
    assert enable_activation_checkpointing(model, [0]) == [0]
    ids = torch.randint(4, 50, (1, 6))
    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    assert any(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
    with pytest.raises(ValueError):
        enable_activation_checkpointing(model, [5])
    with pytest.raises(ValueError):
        enable_activation_checkpointing(model, 0)


@pytest.mark.parametrize("params", [{"dropout": 0.3}, {"dropout": 0.3, "use_dora": True}])
def test_recomputed_layers_draw_the_same_dropout_masks(tiny_llama_dir, params):
    # the recomputation in backward runs each LoRA layer's forward again: its dropout key (lmforge's fused layer)
    # or its nn.Dropout (peft's DoRA layer) must draw what the first forward drew, or the gradients would belong to
    # other masks than the loss. torch.utils.checkpoint restores the generator state before recomputing; the same
    # operations on the same inputs then give the same bits.
    from lmforge.config.schema import ModelConfig
    from lmforge.methods import METHODS, build_method
    from lmforge.model import load_model
    from lmforge.model.task import TaskInfo

    task = TaskInfo("causal_lm")
    ids = torch.randint(4, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    grads = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = build_method("lora", METHODS["lora"].params(**params)).apply(
            load_model(ModelConfig(name=str(tiny_llama_dir)), task), task)
        noise = torch.Generator().manual_seed(1)
        with torch.no_grad():  # lora_B off zero, so the masks reach every gradient
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=noise) * 0.05)
        if checkpointed:
            enable_activation_checkpointing(model)
        model.train()
        torch.manual_seed(2)
        grads.append(_grads(model, {"input_ids": ids, "labels": ids}))
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name, reference in grads[0].items():
        assert torch.equal(grads[1][name], reference), name
