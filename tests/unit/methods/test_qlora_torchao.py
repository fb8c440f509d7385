"""qlora's torchao backend (int8 / int4 weight-only base). torchao is optional: the training test
runs with the pinned torchao==0.18.0 (installed by make install); without it, the backend is a clear UserError."""

from __future__ import annotations

import sys

import pytest
import torch

from lmforge.errors import UserError
from lmforge.methods import METHODS, build_method
from tests.contracts.cases import fresh_base, logits, make_batch, task_for

HEAD = "causal_lm"


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _qlora(**params):
    return build_method("qlora", METHODS["qlora"].params.model_validate({"r": 4, "dropout": 0.0, "backend": "torchao", **params}))


def test_missing_torchao_is_a_user_error_naming_the_pin(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # simulate "not installed"
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(UserError, match="needs the torchao package") as info:
        _qlora().load_kwargs()
    assert "torchao==0.18.0" in info.value.hint


@pytest.mark.parametrize("bits", [8, 4])
def test_torchao_base_trains_and_merges_into_plain_weights(dirs, bits):
    batch = make_batch(HEAD, dirs)
    method = _qlora(bits=bits)
    model = method.apply(fresh_base(HEAD, dirs, **method.load_kwargs()), task_for(HEAD))
    layer = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    assert type(layer.weight).__module__.startswith("torchao.")
    model.train()
    model(**batch).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.05)
    expected = logits(model, batch)
    merged = method.merge(model)
    assert not any(type(p).__module__.startswith("torchao.") for p in merged.parameters())
    assert getattr(merged.config, "quantization_config", None) is None
    torch.testing.assert_close(logits(merged, batch), expected, rtol=0, atol=1e-5)
