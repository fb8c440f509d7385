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


def test_frozen_head_takes_the_fused_path(tiny_llama_dir):
    """LoRA on the body, plain frozen head: LinearCrossEntropy (gradients in the forward) equals full CE."""
    from peft import LoraConfig, get_peft_model

    from lmforge.objectives.causal_lm.chunked import LinearCrossEntropy

    torch.manual_seed(0)
    model = get_peft_model(_model(tiny_llama_dir, lora=False),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    batch = _batch(model.config.vocab_size)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    full_sum, _ = full_causal_lm_loss(model(**inputs, use_cache=False).logits, batch["labels"])
    full_sum.backward()
    full_grads = _grads(model)
    model.zero_grad()
    loss_sum, _ = chunked_causal_lm_loss(model, batch, chunk_size=5)
    assert type(loss_sum.grad_fn).__name__ == LinearCrossEntropy.__name__ + "Backward"
    loss_sum.backward()
    torch.testing.assert_close(loss_sum, full_sum, atol=1e-4, rtol=0)
    for name, grad in full_grads.items():
        torch.testing.assert_close(_grads(model)[name], grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_linear_cross_entropy_matches_autograd_with_bias(chunk):
    """Loss and gradients for hidden, weight and bias equal F.cross_entropy(F.linear(...)) in fp32
    (same products, summed per chunk: fp32 reassociation, ~1e-6 relative)."""
    from lmforge.objectives.causal_lm.chunked import LinearCrossEntropy

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(10, 8, generator=g, requires_grad=True)
    weight = torch.randn(13, 8, generator=g, requires_grad=True)
    bias = torch.randn(13, generator=g, requires_grad=True)
    targets = torch.randint(0, 13, (10,), generator=g)
    ref = torch.nn.functional.cross_entropy(torch.nn.functional.linear(hidden, weight, bias), targets, reduction="sum")
    ref_grads = torch.autograd.grad(ref * 0.5, (hidden, weight, bias))
    got = LinearCrossEntropy.apply(hidden, weight, bias, targets, chunk)
    got_grads = torch.autograd.grad(got * 0.5, (hidden, weight, bias))  # the incoming gradient scales them
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-6)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_linear_cross_entropy_under_bf16_autocast():
    """Under bf16 autocast the fused path equals autograd through the same autocast matmuls to
    bf16 precision (8 mantissa bits: ~4e-3 relative per rounding; checked at 2e-2 of the scale)."""
    from lmforge.objectives.causal_lm.chunked import LinearCrossEntropy

    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(24, 16, generator=g, requires_grad=True)
    weight = torch.randn(40, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 40, (24,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = torch.nn.functional.cross_entropy(torch.nn.functional.linear(hidden, weight).float(), targets,
                                                reduction="sum")
        got = LinearCrossEntropy.apply(hidden, weight, None, targets, 7)
    ref_grads = torch.autograd.grad(ref, (hidden, weight))
    got_grads = torch.autograd.grad(got, (hidden, weight))
    assert got.dtype == torch.float32 and got_grads[1].dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=2e-2 * ref.abs().item(), rtol=0)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=2e-2 * b.abs().max().item(), rtol=0)


def test_linear_cross_entropy_hands_its_gradient_buffers_over_once():
    """Backward scales the forward's gradient buffers in place and gives them away (no vocab x hidden
    copy), so a second backward through the same graph must fail loudly instead of returning
    already-scaled gradients; .backward() accumulates the scaled gradient into weight.grad."""
    from lmforge.objectives.causal_lm.chunked import LinearCrossEntropy

    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(9, 6, generator=g, requires_grad=True)
    weight = torch.randn(11, 6, generator=g, requires_grad=True)
    targets = torch.randint(0, 11, (9,), generator=g)
    ref = torch.nn.functional.cross_entropy(torch.nn.functional.linear(hidden, weight), targets, reduction="sum")
    (ref_w,) = torch.autograd.grad(ref * 0.25, (weight,))
    got = LinearCrossEntropy.apply(hidden, weight, None, targets, 4) * 0.25
    got.backward(retain_graph=True)
    torch.testing.assert_close(weight.grad, ref_w, atol=1e-6, rtol=1e-5)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        got.backward()
