"""export_merged: plain transformers folder with tokenizer, chat template, dtype and stop tokens."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from lmforge.errors import UserError
from lmforge.export import export_merged
from tests.unit.export.conftest import logits, lora_model


@pytest.fixture(scope="module")
def tok(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_merged_folder_keeps_tokenizer_and_chat_template(tiny_llama_dir, tok, tmp_path, ids):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    method, model = lora_model(tiny_llama_dir)
    before = logits(model, ids)
    out = export_merged(method, model, tok, tmp_path / "merged", "float32")
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "config.json" in names and not any(n.endswith(".bin") for n in names)
    reloaded_tok = AutoTokenizer.from_pretrained(out)
    assert reloaded_tok.chat_template == tok.chat_template
    assert reloaded_tok.eos_token == "<|im_end|>" and reloaded_tok.pad_token == tok.pad_token
    messages = [{"role": "user", "content": "hi"}]
    assert reloaded_tok.apply_chat_template(messages, tokenize=False) == tok.apply_chat_template(messages, tokenize=False)
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert not any("lora" in n for n in merged.state_dict())
    # the caller's model is untouched: still a peft model with the same outputs
    assert hasattr(model, "peft_config") and torch.equal(logits(model, ids), before)


def test_generation_config_stops_at_end_of_turn(tiny_llama_dir, tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir, eos_token="<|endoftext|>")
    method, model = lora_model(tiny_llama_dir)
    out = export_merged(method, model, tok, tmp_path / "merged", "float32")
    eos = GenerationConfig.from_pretrained(out).eos_token_id
    vocab = tok.get_vocab()
    assert vocab["<|im_end|>"] in eos and vocab["<|endoftext|>"] in eos


def test_dtype_is_applied(tiny_llama_dir, tok, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    method, model = lora_model(tiny_llama_dir)
    out = export_merged(method, model, tok, tmp_path / "merged", "bfloat16")
    with safe_open(out / "model.safetensors", "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(out, dtype="auto").dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # caller's model not cast


def test_full_method_classifier_keeps_labels(tiny_bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmforge.methods import METHODS, build_method

    method = build_method("full", METHODS["full"].params())
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=2, id2label={0: "great", 1: "other"}, label2id={"great": 0, "other": 1}).eval()
    out = export_merged(method, model, AutoTokenizer.from_pretrained(tiny_bert_dir), tmp_path / "merged")
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert reloaded.config.id2label == {0: "great", 1: "other"}
    ids = torch.tensor([[2, 10, 11, 3]])
    assert torch.equal(logits(reloaded, ids), logits(model, ids))


def test_unmergeable_method_is_refused(tiny_llama_dir, tok, tmp_path):
    method = SimpleNamespace(spec=SimpleNamespace(name="prefix", mergeable=False))
    with pytest.raises(UserError, match="cannot be merged"):
        export_merged(method, torch.nn.Linear(1, 1), tok, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_bad_dtype_is_a_user_error(tiny_llama_dir, tok, tmp_path):
    method, model = lora_model(tiny_llama_dir)
    with pytest.raises(UserError, match="dtype"):
        export_merged(method, model, tok, tmp_path / "merged", "int3")
