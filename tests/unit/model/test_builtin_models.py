"""The built-in real models load from their offline packages (slow: real weights)."""

from __future__ import annotations

import pytest
import torch

from lmforge.config.schema import ModelConfig
from lmforge.model.load import load_model, load_tokenizer
from lmforge.model.source import MARKER, resolve_model
from lmforge.model.task import TaskInfo


@pytest.mark.slow
def test_smollm2_loads_from_the_cache_and_generates(smollm2_dir):
    assert (smollm2_dir / MARKER).is_file()
    assert list(smollm2_dir.glob("*.safetensors"))
    cfg = ModelConfig(name="smollm2-135m-instruct", overrides={"num_hidden_layers": 2})
    assert resolve_model(cfg).path == smollm2_dir  # no second conversion
    tok = load_tokenizer(cfg)
    model = load_model(cfg, TaskInfo("causal_lm"), tokenizer=tok)
    assert len(model.model.layers) == 2 and model.config.vocab_size == 49152
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1]:]
    assert new.numel() >= 1
    assert torch.equal(out[0, : prompt["input_ids"].shape[1]], prompt["input_ids"][0])


@pytest.mark.slow
def test_minilm_loads_as_a_two_label_classifier(minilm_dir):
    cfg = ModelConfig(name="minilm-l6")
    task = TaskInfo("sequence_classification", num_labels=2, labels=("great", "other"))
    model = load_model(cfg, task)
    tok = load_tokenizer(cfg)
    batch = tok(["I love this product", "terrible taste"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 2)
    assert model.config.id2label == {0: "great", 1: "other"}
    assert torch.isfinite(logits).all()
