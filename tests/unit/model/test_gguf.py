"""A .gguf file is converted once into the safetensors cache and loads like any HF folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmforge.config.schema import ModelConfig
from lmforge.model.load import load_model, load_tokenizer
from lmforge.model.source import MARKER, resolve_model
from lmforge.model.task import TaskInfo
from tests.unit.model.gguf_writer import LAYERS, byte_vocab, write_tiny_gguf


@pytest.fixture()
def tiny_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path / "cache"))
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def test_gguf_is_converted_once_into_the_cache(tiny_gguf, tmp_path):
    cfg = ModelConfig(name=str(tiny_gguf))
    resolved = resolve_model(cfg)
    assert resolved.gguf_file == "tiny.gguf" and resolved.builtin is None
    assert resolved.path.parent == tmp_path / "cache" / "models" / "gguf"
    assert (resolved.path / MARKER).is_file()
    assert (resolved.path / "model.safetensors").is_file()
    stamp = (resolved.path / MARKER).stat().st_mtime_ns
    assert resolve_model(cfg).path == resolved.path
    assert (resolved.path / MARKER).stat().st_mtime_ns == stamp  # not converted again
    assert tiny_gguf.is_file()  # the user's file is untouched


def test_converted_gguf_loads_with_the_file_weights_and_tokenizer(tiny_gguf):
    from gguf import GGUFReader

    cfg = ModelConfig(name=str(tiny_gguf))
    tok = load_tokenizer(cfg)
    model = load_model(cfg, TaskInfo("causal_lm"), tokenizer=tok)
    assert len(model.model.layers) == LAYERS
    assert model.config.vocab_size == len(byte_vocab())
    assert tok.pad_token_id < model.config.vocab_size
    assert tok.eos_token == "<|im_end|>"
    embd = next(t for t in GGUFReader(str(tiny_gguf)).tensors if t.name == "token_embd.weight")
    expected = torch.from_numpy(np.array(embd.data).reshape(model.config.vocab_size, -1))
    torch.testing.assert_close(model.model.embed_tokens.weight.detach(), expected)
    out = model(**tok(["the the"], return_tensors="pt"))
    assert out.logits.shape[-1] == model.config.vocab_size
