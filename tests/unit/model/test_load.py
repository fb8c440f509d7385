"""Tokenizer pad handling and model loading: heads, overrides, dtype, errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lmforge.config.schema import ModelConfig
from lmforge.errors import UserError
from lmforge.model.load import choose_pad_token, load_model, load_tokenizer
from lmforge.model.task import TaskInfo


class VocabOnly:
    """Just what choose_pad_token reads from a tokenizer."""

    def __init__(self, vocab, unk=None, eos=None):
        self._vocab = {t: i for i, t in enumerate(vocab)}
        self.unk_token = unk
        self.eos_token = eos

    def get_vocab(self):
        return self._vocab


def test_pad_choice_prefers_pad_like_then_unk_then_eos():
    assert choose_pad_token(VocabOnly(["a", "<pad>", "<unk>", "</s>"], unk="<unk>", eos="</s>")) == "<pad>"
    assert choose_pad_token(VocabOnly(["a", "<unk>", "</s>"], unk="<unk>", eos="</s>")) == "<unk>"
    assert choose_pad_token(VocabOnly(["a", "</s>"], eos="</s>")) == "</s>"
    # a pad-like token that is the eos token is not chosen ahead of unk
    assert choose_pad_token(VocabOnly(["<|endoftext|>", "<unk>"], unk="<unk>", eos="<|endoftext|>")) == "<unk>"
    with pytest.raises(UserError, match="no pad, unk or eos"):
        choose_pad_token(VocabOnly(["a"]))


def _without_pad(src, dst):
    shutil.copytree(src, dst)
    cfg_path = dst / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("pad_token", None)
    cfg_path.write_text(json.dumps(cfg))
    special = dst / "special_tokens_map.json"
    if special.exists():
        data = json.loads(special.read_text())
        data.pop("pad_token", None)
        special.write_text(json.dumps(data))
    return dst


def test_load_tokenizer_sets_a_missing_pad_and_right_padding(tiny_llama_dir, tmp_path):
    folder = _without_pad(tiny_llama_dir, tmp_path / "nopad")
    tok = load_tokenizer(ModelConfig(name=str(folder)))
    assert tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "right"
    batch = tok(["hello", "hello the model"], padding=True)
    assert batch["input_ids"][0][-1] == tok.pad_token_id


def test_load_tokenizer_keeps_an_existing_pad(tiny_bert_dir):
    assert load_tokenizer(ModelConfig(name=str(tiny_bert_dir))).pad_token == "[PAD]"


def test_causal_lm_with_layer_override(tiny_llama_dir):
    cfg = ModelConfig(name=str(tiny_llama_dir), overrides={"num_hidden_layers": 1})
    model = load_model(cfg, TaskInfo("causal_lm"))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert len(model.model.layers) == 1
    assert model.config.pad_token_id == load_tokenizer(cfg).pad_token_id
    assert next(model.parameters()).dtype == torch.float32
    full = load_model(ModelConfig(name=str(tiny_llama_dir)), TaskInfo("causal_lm"))
    torch.testing.assert_close(model.model.layers[0].mlp.up_proj.weight, full.model.layers[0].mlp.up_proj.weight)


def test_classification_head_gets_the_label_maps(tiny_bert_dir):
    task = TaskInfo("sequence_classification", num_labels=3, labels=("neg", "neu", "pos"))
    model = load_model(ModelConfig(name=str(tiny_bert_dir)), task)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert model.config.label2id["pos"] == 2
    assert model.classifier.out_features == 3


def test_explicit_dtype(tiny_llama_dir):
    model = load_model(ModelConfig(name=str(tiny_llama_dir), dtype="bfloat16"), TaskInfo("causal_lm"))
    assert next(model.parameters()).dtype == torch.bfloat16


def test_unknown_override_is_a_user_error_with_did_you_mean(tiny_llama_dir):
    cfg = ModelConfig(name=str(tiny_llama_dir), overrides={"num_hidden_layer": 1})
    with pytest.raises(UserError, match="did you mean 'num_hidden_layers'") as info:
        load_model(cfg, TaskInfo("causal_lm"))
    assert info.value.where == "model.overrides.num_hidden_layer"


def test_broken_model_folder_is_a_user_error_naming_it(tiny_llama_dir, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="could not load the model of model '.*broken'"):
        load_model(ModelConfig(name=str(folder)), TaskInfo("causal_lm"))


def test_pad_choice_skips_tokens_beyond_the_model_vocab():
    tok = VocabOnly(["a", "</s>", "<pad>"], eos="</s>")
    assert choose_pad_token(tok, vocab_size=2) == "</s>"
    assert choose_pad_token(tok, vocab_size=3) == "<pad>"
