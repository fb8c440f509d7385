"""Freeze: which parameters train (head found generically, last N blocks), what is saved."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from lmforge.errors import UserError
from lmforge.methods import METHODS, build_method
from lmforge.methods.freeze.method import MANIFEST, WEIGHTS, head_names, transformer_blocks
from tests.contracts.cases import fresh_base, task_for


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _freeze(**params):
    return build_method("freeze", METHODS["freeze"].params.model_validate(params))


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_classification_trains_only_the_new_head(dirs):
    head = "sequence_classification"
    model = _freeze().apply(fresh_base(head, dirs), task_for(head))
    assert _trainable(model) == {"classifier.weight", "classifier.bias"}


def test_classification_last_layer_adds_the_top_block(dirs):
    head = "sequence_classification"
    model = _freeze(last_layers=1).apply(fresh_base(head, dirs), task_for(head))
    names = _trainable(model)
    assert "classifier.weight" in names
    assert any(n.startswith("bert.encoder.layer.1.") for n in names)
    assert not any(n.startswith("bert.encoder.layer.0.") or "embeddings" in n for n in names)


def test_causal_lm_with_tied_head_and_no_layers_is_a_user_error(dirs):
    with pytest.raises(UserError, match="nothing to train") as info:
        _freeze().apply(fresh_base("causal_lm", dirs), task_for("causal_lm"))
    assert "last_layers" in info.value.hint


def test_causal_lm_last_layers_trains_exactly_those_blocks(dirs):
    model = _freeze(last_layers=1).apply(fresh_base("causal_lm", dirs), task_for("causal_lm"))
    names = _trainable(model)
    assert names and all(n.startswith("model.layers.1.") for n in names)
    assert len(names) == len(list(model.model.layers[1].parameters()))


def test_too_many_layers_is_a_user_error(dirs):
    with pytest.raises(UserError, match="has 2 layers"):
        _freeze(last_layers=5).apply(fresh_base("causal_lm", dirs), task_for("causal_lm"))


def test_blocks_and_head_are_found_generically(dirs):
    llama = fresh_base("causal_lm", dirs)
    bert = fresh_base("sequence_classification", dirs)
    assert transformer_blocks(llama)[0] == "model.layers"
    assert transformer_blocks(bert)[0] == "bert.encoder.layer"
    assert head_names(llama) == set()  # lm_head is tied to the embeddings
    assert head_names(bert) == {"classifier.weight", "classifier.bias"}


def test_save_writes_only_trainable_tensors(dirs, tmp_path):
    head = "sequence_classification"
    method = _freeze(last_layers=1)
    model = method.apply(fresh_base(head, dirs), task_for(head))
    method.save(model, tmp_path)
    with safe_open(str(tmp_path / WEIGHTS), framework="pt") as handle:
        assert set(handle.keys()) == _trainable(model)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["params"]["last_layers"] == 1
    assert set(manifest["tensors"]) == _trainable(model)


def test_load_over_a_different_base_is_a_user_error(dirs, tmp_path):
    head = "sequence_classification"
    method = _freeze()
    method.save(method.apply(fresh_base(head, dirs), task_for(head)), tmp_path)
    with pytest.raises(UserError, match="do not fit"):
        method.load(fresh_base("causal_lm", dirs), tmp_path, task_for("causal_lm"))
