"""The loss mask on SmolLM2's real tokenizer and ChatML template (it injects a default system prompt)."""

from __future__ import annotations

import pytest

from lmforge.config.schema import DataConfig
from lmforge.data.encode import encode_causal

pytestmark = pytest.mark.slow


def test_mask_covers_exactly_assistant_tokens_and_im_end(smollm2_tokenizer):
    tok = smollm2_tokenizer
    messages = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "And of Spain?"},
        {"role": "assistant", "content": "Madrid."},
    ]
    cfg = DataConfig(format="chat", train="unused.jsonl", max_length=512)
    (feature,) = encode_causal([{"messages": messages}], tok, cfg)
    input_ids, labels = feature["input_ids"], feature["labels"]
    text = tok.decode(input_ids)
    assert "You are a helpful AI assistant named SmolLM" in text  # the template's default system prompt

    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    expected = []
    for content in ("The capital of France is Paris.", "Madrid."):
        expected += tok(content, add_special_tokens=False)["input_ids"] + [im_end]
    assert [t for t in labels if t != -100] == expected

    # each trained run starts right after an "<|im_start|>assistant\n" header
    trained = [label != -100 for label in labels]
    starts = [i for i in range(len(trained)) if trained[i] and (i == 0 or not trained[i - 1])]
    assert len(starts) == 2
    for start in starts:
        assert input_ids[start - len(header) : start] == header
    # nothing of the system prompt, the user turns or the headers is trained
    assert not any(trained[: starts[0]])
    assert sum(trained) == len(expected)


def test_own_system_prompt_replaces_the_default_and_preview_marks_answers(smollm2_tokenizer):
    from lmforge.data.preview import preview

    tok = smollm2_tokenizer
    cfg = DataConfig(format="instruction", train="unused.jsonl", system_prompt="You answer tax questions.")
    record = {"instruction": "Is interest taxed?", "input": "", "output": "Usually, yes.", "system": "You answer tax questions."}
    (feature,) = encode_causal([record], tok, cfg)
    assert "SmolLM" not in tok.decode(feature["input_ids"])
    trained = [t for t in feature["labels"] if t != -100]
    assert tok.decode(trained) == "Usually, yes.<|im_end|>"
    shown = preview([record], tok, cfg)
    assert "<|im_start|>assistant\n[[Usually, yes.<|im_end|>]]" in shown
    assert shown.count("[[") == 1
