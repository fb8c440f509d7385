"""Chunked, labelled-positions-only loss equals the full-logits cross-entropy (values and grads)."""

from __future__ import annotations

import pytest
import torch

from lmforge.objectives.causal_lm.chunked import (
    chunked_causal_lm_loss,
    find_body_and_head,
    full_causal_lm_loss,
)


def _model(path, lora: bool):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "lm_head"], init_lora_weights=False)
        model = get_peft_model(model, cfg)
    return model.train()


def _batch(vocab):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab, (3, 11), generator=g)
    labels = ids.clone()
    labels[:, :4] = -100  # prompt
    labels[2, 8:] = -100  # padding
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("lora", [False, True])
def test_chunked_equals_full_loss_and_grads(tiny_llama_dir, lora):
    model = _model(tiny_llama_dir, lora)
    assert find_body_and_head(model) is not None  # really takes the chunked path
    batch = _batch(model.config.vocab_size)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    full_sum, full_count = full_causal_lm_loss(model(**inputs, use_cache=False).logits, batch["labels"])
    full_sum.backward()
    full_grads = _grads(model)
    model.zero_grad()
    loss_sum, count = chunked_causal_lm_loss(model, batch, chunk_size=5)
    loss_sum.backward()
    chunk_grads = _grads(model)
    assert count == full_count == 7 + 7 + 4  # rows 0,1: 7 targets; row 2: 4 targets
    torch.testing.assert_close(loss_sum, full_sum, atol=1e-4, rtol=0)
    assert chunk_grads.keys() == full_grads.keys() and len(chunk_grads) > 0
    if lora:
        assert all("lora" in n for n in chunk_grads)
    for name in full_grads:
        torch.testing.assert_close(chunk_grads[name], full_grads[name], atol=1e-5, rtol=1e-4)


def test_chunked_no_grad_and_empty_labels(tiny_llama_dir):
    model = _model(tiny_llama_dir, lora=False).eval()
    batch = _batch(model.config.vocab_size)
    with torch.no_grad():
        s1, c1 = chunked_causal_lm_loss(model, batch, chunk_size=1)
        s2, c2 = chunked_causal_lm_loss(model, batch, chunk_size=4096)
    assert c1 == c2 and torch.allclose(s1, s2, atol=1e-4)
    batch["labels"][:] = -100
    s, c = chunked_causal_lm_loss(model, batch)
    assert c == 0 and s.item() == 0.0 and s.requires_grad


def test_prompt_learning_falls_back_to_full_logits(tiny_llama_dir):
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(_model(tiny_llama_dir, lora=False), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    assert find_body_and_head(model) is None
    batch = _batch(model.config.vocab_size)
    del batch["attention_mask"]
    loss_sum, count = chunked_causal_lm_loss(model, batch)
    assert count > 0 and torch.isfinite(loss_sum)
