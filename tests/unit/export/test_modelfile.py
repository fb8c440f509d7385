"""Ollama Modelfile: ChatML templates are translated, default system prompts kept, stop tokens written."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from lmforge.export.modelfile import CHATML_OLLAMA, chatml_default_system, render_modelfile, write_modelfile

SMOLLM_STYLE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_STYLE = (
    "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] + '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture
def tok(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def _go_chatml(messages):
    """What Ollama's Go template CHATML_OLLAMA renders for ``messages`` (its range loop, by hand)."""
    body = CHATML_OLLAMA.removeprefix("{{- range .Messages }}").split("{{ end }}")
    turn, tail = body[0], body[1]
    return "".join(turn.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"])
                   for m in messages) + tail


def test_chatml_template_is_translated(tok, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    text = write_modelfile(gguf, tok, {"temperature": 0}).read_text()
    lines = text.splitlines()
    assert lines[0] == "FROM ./model.gguf"
    assert f'TEMPLATE """{CHATML_OLLAMA}"""' in text and "SYSTEM" not in text
    assert [l for l in lines if l.startswith("PARAMETER stop")] == ['PARAMETER stop "<|im_end|>"',
                                                                     'PARAMETER stop "<|im_start|>"']
    assert lines[-1] == "PARAMETER temperature 0"
    assert gguf.read_bytes() == b"GGUF"  # the GGUF itself is untouched


def test_go_template_renders_like_the_jinja_template(tok):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi"}, {"role": "user", "content": "what is tax?"}]
    jinja = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert _go_chatml(messages) == jinja


def test_default_system_prompt_becomes_system(tok):
    tok.chat_template = SMOLLM_STYLE
    assert chatml_default_system(tok) == (True, "You are a helpful assistant.")
    assert 'SYSTEM """You are a helpful assistant."""' in render_modelfile("m.gguf", tok)


def test_non_chatml_template_is_not_translated(tok):
    tok.chat_template = LLAMA3_STYLE
    assert chatml_default_system(tok) == (False, None)
    text = render_modelfile("m.gguf", tok)
    assert "TEMPLATE" not in text.replace("# No TEMPLATE", "") and "not ChatML" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and '"<|im_start|>"' not in text
