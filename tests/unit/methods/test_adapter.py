"""Bottleneck adapters: placement (houlsby / pfeiffer), zero-init no-op, disable switch, save/load."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lmforge.errors import UserError
from lmforge.methods import METHODS, build_method
from lmforge.methods.adapter.module import CHILD, BottleneckAdapter, adapters, disabled
from tests.contracts.cases import fresh_base, logits, make_batch, task_for

HEADS = ("causal_lm", "sequence_classification")


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _adapter(**params):
    return build_method("adapter", METHODS["adapter"].params.model_validate(params))


def _sites(model):
    return sorted(name.rsplit(".", 1)[0] for name, m in model.named_modules() if name.endswith(CHILD))


def _train(model, batch, steps=3):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    for _ in range(steps):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_spec_declares_not_mergeable():
    spec = METHODS["adapter"]
    assert spec.mergeable is False and spec.quantized_base is False and spec.objectives is None


@pytest.mark.parametrize(
    ("head", "style", "expected"),
    [
        ("causal_lm", "pfeiffer", ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]),
        ("causal_lm", "houlsby", ["model.layers.0.mlp.down_proj", "model.layers.0.self_attn.o_proj",
                                  "model.layers.1.mlp.down_proj", "model.layers.1.self_attn.o_proj"]),
        ("sequence_classification", "houlsby", ["bert.encoder.layer.0.attention.output.dense",
                                                "bert.encoder.layer.0.output.dense",
                                                "bert.encoder.layer.1.attention.output.dense",
                                                "bert.encoder.layer.1.output.dense"]),
    ],
)
def test_adapters_sit_after_attention_and_mlp_outputs(dirs, head, style, expected):
    model = _adapter(style=style, reduction_factor=4).apply(fresh_base(head, dirs), task_for(head))
    assert _sites(model) == expected
    first = adapters(model)[0]
    assert (first.down.in_features, first.down.out_features, first.up.out_features) == (32, 8, 32)


def test_only_adapters_and_classification_head_train(dirs):
    llama = _adapter().apply(fresh_base("causal_lm", dirs), task_for("causal_lm"))
    assert all(f".{CHILD}." in n for n, p in llama.named_parameters() if p.requires_grad)
    bert = _adapter().apply(fresh_base("sequence_classification", dirs), task_for("sequence_classification"))
    trained = {n for n, p in bert.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= trained
    assert all(f".{CHILD}." in n or n.startswith("classifier.") for n in trained)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("style", ["pfeiffer", "houlsby"])
def test_fresh_adapter_leaves_outputs_unchanged(dirs, head, style):
    batch = make_batch(head, dirs)
    base = fresh_base(head, dirs)
    expected = logits(base, batch)
    model = _adapter(style=style, non_linearity="gelu").apply(base, task_for(head))
    torch.testing.assert_close(logits(model, batch), expected, rtol=0, atol=0)


@pytest.mark.parametrize("head", HEADS)
def test_disabled_adapter_reproduces_base_after_training(dirs, head):
    batch = make_batch(head, dirs)
    base = fresh_base(head, dirs)
    expected = logits(base, batch)
    model = _adapter(style="houlsby").apply(base, task_for(head))
    _train(model, batch)
    trained = logits(model, batch)
    if head == "causal_lm":  # (classification also trains its head, which the switch keeps)
        assert not torch.allclose(trained, expected, atol=1e-4), "training did not move the adapters"
        with disabled(model):
            torch.testing.assert_close(logits(model, batch), expected, rtol=0, atol=0)
    with disabled(model):
        assert not any(a.enabled for a in adapters(model))
    torch.testing.assert_close(logits(model, batch), trained, rtol=0, atol=0)


def test_deep_copy_has_its_own_adapters(dirs):
    batch = make_batch("causal_lm", dirs)
    model = _adapter().apply(fresh_base("causal_lm", dirs), task_for("causal_lm"))
    _train(model, batch, steps=1)
    clone = copy.deepcopy(model)
    torch.testing.assert_close(logits(clone, batch), logits(model, batch), rtol=0, atol=0)
    with torch.no_grad():
        for adapter in adapters(clone):
            adapter.up.weight.zero_()
            adapter.up.bias.zero_()
    assert not torch.allclose(logits(clone, batch), logits(model, batch))


def test_save_writes_own_format_and_rejects_a_mismatched_folder(dirs, tmp_path):
    head = "causal_lm"
    method = _adapter(reduction_factor=8)
    model = method.apply(fresh_base(head, dirs), task_for(head))
    method.save(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["method"] == "adapter" and config["params"]["reduction_factor"] == 8
    assert config["sites"] == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    loaded = method.load(fresh_base(head, dirs), tmp_path, task_for(head))
    assert not any(p.requires_grad for p in loaded.parameters())
    assert len(adapters(loaded)) == 2
    config["params"]["style"] = "houlsby"  # now the folder lacks the attention adapters
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="do not fit"):
        method.load(fresh_base(head, dirs), tmp_path, task_for(head))


def test_bad_sites_and_models_without_blocks_are_user_errors(dirs):
    with pytest.raises(UserError, match="not a linear layer"):
        _adapter(mlp_output="mlp.nope").apply(fresh_base("causal_lm", dirs), task_for("causal_lm"))
    with pytest.raises(UserError, match="no list of transformer blocks"):
        _adapter().apply(torch.nn.Sequential(torch.nn.Linear(4, 4)), task_for("causal_lm"))
    with pytest.raises(UserError, match="cannot be merged"):
        _adapter().merge(torch.nn.Linear(2, 2))


def test_bottleneck_update_starts_at_zero():
    adapter = BottleneckAdapter(16, 4, "relu")
    assert torch.equal(adapter(torch.randn(3, 16)), torch.zeros(3, 16))
    assert adapter.up.weight.abs().sum() == 0 and adapter.down.weight.abs().sum() > 0
