"""QLoRA: quantization config, what gets quantized / trained, 8-bit, merge into a dequantized model."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from lmforge.errors import UserError
from lmforge.methods import METHODS, build_method
from tests.contracts.cases import fresh_base, logits, make_batch, task_for


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _qlora(**params):
    return build_method("qlora", METHODS["qlora"].params.model_validate({"r": 4, "dropout": 0.0, **params}))


def _layer_types(model):
    return {type(m).__name__ for m in model.modules()}


def test_load_kwargs_describe_the_quantization():
    four = _qlora().load_kwargs()["quantization_config"]
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4" and four.bnb_4bit_use_double_quant
    assert four.bnb_4bit_compute_dtype == torch.float32  # auto on a CPU-only machine
    assert "classifier" in four.llm_int8_skip_modules
    fp4 = _qlora(quant_type="fp4", double_quant=False, compute_dtype="bfloat16").load_kwargs()["quantization_config"]
    assert fp4.bnb_4bit_quant_type == "fp4" and not fp4.bnb_4bit_use_double_quant
    assert fp4.bnb_4bit_compute_dtype == torch.bfloat16
    eight = _qlora(bits=8).load_kwargs()["quantization_config"]
    assert eight.load_in_8bit and not eight.load_in_4bit


def test_classification_head_stays_full_precision_and_trains(dirs):
    head = "sequence_classification"
    method = _qlora()
    model = method.apply(fresh_base(head, dirs, **method.load_kwargs()), task_for(head))
    encoder_linears = [m for n, m in model.named_modules() if n.endswith("attention.self.query.base_layer")]
    assert encoder_linears and all(type(m).__name__ == "Linear4bit" for m in encoder_linears)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("classifier" in n for n in trained)
    assert all("lora_" in n or "classifier" in n for n in trained)


def test_eight_bit_base_trains(dirs):
    head = "causal_lm"
    batch = make_batch(head, dirs)
    method = _qlora(bits=8)
    model = method.apply(fresh_base(head, dirs, **method.load_kwargs()), task_for(head))
    assert "Linear8bitLt" in _layer_types(model)
    model.train()
    model(**batch).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_merge_exports_a_dequantized_full_precision_model(dirs, tmp_path, caplog):
    from transformers import AutoModelForCausalLM

    head = "causal_lm"
    batch = make_batch(head, dirs)
    method = _qlora()
    model = method.apply(fresh_base(head, dirs, **method.load_kwargs()), task_for(head))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.05)
    expected = logits(model, batch)
    with caplog.at_level(logging.WARNING, logger="lmforge"):
        merged = method.merge(model)
    assert "dequantized" in caplog.text
    assert not {"Linear4bit", "Linear8bitLt"} & _layer_types(merged)
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    assert getattr(merged.config, "quantization_config", None) is None
    torch.testing.assert_close(logits(merged, batch), expected, rtol=0, atol=1e-5)
    merged.save_pretrained(tmp_path)
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    plain = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    torch.testing.assert_close(logits(plain, batch), expected, rtol=0, atol=1e-5)


def test_model_without_linear_layers_is_a_user_error():
    model = torch.nn.Sequential(torch.nn.Embedding(8, 4))
    with pytest.raises(UserError, match="no linear layer"):
        _qlora().apply(model, task_for("causal_lm"))


def test_unquantized_base_is_a_programming_error(dirs):
    with pytest.raises(RuntimeError, match="load_kwargs"):
        _qlora().apply(fresh_base("causal_lm", dirs), task_for("causal_lm"))
