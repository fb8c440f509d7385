"""preview() marks exactly the trained spans and reports token counts; prompt/reference helpers."""

from __future__ import annotations

from lmforge.config.schema import DataConfig
from lmforge.data.preview import preview
from lmforge.data.messages import prompt_messages, reference_text

CHAT = {
    "messages": [
        {"role": "user", "content": "what is the capital of france?"},
        {"role": "assistant", "content": "paris"},
    ],
    "_where": "chat.jsonl:3",
}


def cfg(format="chat", **kw):
    return DataConfig(format=format, train="unused.jsonl", **kw)


def test_preview_marks_assistant_turn(tiny_tok):
    out = preview([CHAT], tiny_tok, cfg())
    assert "example 1 (chat.jsonl:3)" in out
    assert "<|im_start|>assistant\n[[paris<|im_end|>]]\n" in out
    assert out.count("[[") == 1
    # <|im_start|> user what is the capital of france ? <|im_end|> <|im_start|> assistant paris <|im_end|>
    assert "tokens: total 14, trained 2" in out


def test_preview_color_and_n(tiny_tok):
    out = preview([CHAT] * 5, tiny_tok, cfg(), n=2, color=True)
    assert out.count("--- example") == 2
    assert "\x1b[32mparis<|im_end|>\x1b[0m" in out and "[[" not in out


def test_preview_shows_truncation_and_drop(tiny_tok):
    out = preview([CHAT], tiny_tok, cfg(max_length=10))
    assert "trained 0" in out and "truncated from 14" in out and "dropped" in out
    assert "paris" not in out


def test_preview_text_and_classification(tiny_tok):
    out = preview([{"text": "the bank", "_where": "t.txt:1"}], tiny_tok, cfg("text"))
    assert "[[the bank<|im_end|>]]" in out and "tokens: total 3, trained 3" in out
    out = preview([{"text": "good food", "text_pair": None, "label": "pos"}], tiny_tok, cfg("classification"))
    assert "label: [[pos]]" in out and "tokens: total 2" in out


def test_prompt_messages_and_reference_text():
    assert prompt_messages(CHAT, cfg()) == [CHAT["messages"][0]]
    assert reference_text(CHAT) == "paris"
    rec = {"instruction": "q", "input": "ctx", "output": "a", "system": "s"}
    assert prompt_messages(rec, cfg("instruction")) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q\n\nctx"},
    ]
    assert reference_text(rec) == "a"


def test_preview_of_a_long_document_shows_one_block(tiny_tok):
    out = preview([{"text": "tax " * 30}], tiny_tok, cfg("text", max_length=8))
    assert "[[tax tax tax tax tax tax tax tax]]" in out
    assert "23 more tokens" in out and "tokens: total 31, trained 31" in out
