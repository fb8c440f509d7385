"""QLoRA gradients are exact: after an evaluation pass (eval mode, no grad) the LoRA gradients of
a 4-bit model equal those of LoRA over a dequantized float32 copy of the same base.

The second test documents the upstream bitsandbytes bug worked around in ``lmforge.compat.bnb``:
with the layer flag bitsandbytes sets on AVX512-BF16 CPUs, the eval pass repacks the weights and
the gradients come out wrong. When that test fails, upstream fixed the bug: delete the workaround.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lmforge.methods import METHODS, build_method
from tests.contracts.cases import fresh_base, make_batch, task_for

HEAD = "causal_lm"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """A tiny random Llama with hidden size 64: the bitsandbytes CPU repack needs in_features >= 64."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.fixtures.tiny import build_tiny_tokenizer

    path = tmp_path_factory.mktemp("llama64")
    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return {HEAD: path}


def _qlora_model(dirs, **params):
    """A 4-bit tiny Llama with LoRA whose B matrices are non-zero (so A gets gradients too)."""
    method = build_method("qlora", METHODS["qlora"].params.model_validate({"r": 4, "dropout": 0.0, **params}))
    model = method.apply(fresh_base(HEAD, dirs, **method.load_kwargs()), task_for(HEAD))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


def _dequantized_reference(model):
    """LoRA with the same weights over a float32 copy of the dequantized 4-bit base."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    model = copy.deepcopy(model)
    config = model.peft_config["default"]
    weights = get_peft_model_state_dict(model)
    base = model.unload().dequantize(dtype=torch.float32)
    assert not any("4bit" in type(m).__name__ for m in base.modules())
    reference = get_peft_model(base, config)
    set_peft_model_state_dict(reference, weights)
    return reference


def _lora_grads(model, batch) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if "lora_" in n}


def _eval_pass(model, batch) -> None:
    model.eval()
    with torch.no_grad():
        model(**{k: v for k, v in batch.items() if k != "labels"})


def _assert_grads_equal(got, expected):
    assert got.keys() == expected.keys() and got
    for name, grad in expected.items():
        assert grad is not None and grad.abs().sum() > 0, name
        assert got[name] is not None, f"{name}: no gradient"
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("params", [{}, {"quant_type": "fp4", "double_quant": False}], ids=["nf4-dq", "fp4"])
def test_lora_grads_after_eval_pass_equal_dequantized_fp32(dirs, params):
    batch = make_batch(HEAD, dirs)
    model = _qlora_model(dirs, **params)
    expected = _lora_grads(_dequantized_reference(model), batch)
    _eval_pass(model, batch)
    _eval_pass(model, batch)
    _assert_grads_equal(_lora_grads(model, batch), expected)


def test_upstream_repack_bug_still_present(dirs):
    """Fails once bitsandbytes fixes the CPU repack bug; then delete lmforge/compat/bnb.py."""
    import bitsandbytes as bnb

    batch = make_batch(HEAD, dirs)
    model = _qlora_model(dirs)
    expected = _lora_grads(_dequantized_reference(model), batch)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers), "workaround not applied"
    for layer in layers:  # what bitsandbytes sets on an AVX512-BF16 CPU (this test's machine may lack one)
        layer.support_avx512bf16_for_cpu = True
    _eval_pass(model, batch)
    got = _lora_grads(model, batch)
    broken = any(got[n] is None or not torch.allclose(got[n], g, rtol=1e-4, atol=1e-6) for n, g in expected.items())
    assert broken, "bitsandbytes no longer breaks 4-bit gradients after an eval pass: delete lmforge/compat/bnb.py"


def test_workaround_refuses_an_already_repacked_model(dirs):
    import bitsandbytes as bnb

    from lmforge.compat.bnb import keep_4bit_weights_trainable

    batch = make_batch(HEAD, dirs)
    model = _qlora_model(dirs)
    for layer in model.modules():
        if isinstance(layer, bnb.nn.Linear4bit):
            layer.support_avx512bf16_for_cpu = True
    _eval_pass(model, batch)
    with pytest.raises(RuntimeError, match="already repacked"):
        keep_4bit_weights_trainable(model)
    assert keep_4bit_weights_trainable(torch.nn.Linear(2, 2)) == 0
