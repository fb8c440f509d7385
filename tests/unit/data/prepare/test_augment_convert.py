"""Seeded augmentation and format conversions."""

from __future__ import annotations

import random

import pytest

from lmforge.config.prepare import AugmentConfig
from lmforge.data.prepare.augment import augment_records, eda_variant, oversample, random_delete, synonym_replace
from lmforge.data.prepare.convert import (
    chat_to_instruction,
    csv_to_classification,
    instruction_to_chat,
    openai_to_sharegpt,
    sharegpt_to_openai,
)
from lmforge.errors import UserError

TEXT = "This great coffee is really good and the price is cheap"


def test_synonym_replacement_uses_the_map():
    out = synonym_replace(TEXT.split(), random.Random(0), 3)
    changed = [(a, b) for a, b in zip(TEXT.split(), out) if a != b]
    assert len(changed) == 3 and all(a.lower() in ("great", "really", "good", "cheap", "price") for a, _ in changed)


def test_eda_is_seeded_and_skips_short_texts():
    cfg = AugmentConfig(eda=True)
    assert eda_variant(TEXT, random.Random(1), cfg) == eda_variant(TEXT, random.Random(1), cfg)
    assert eda_variant("too short", random.Random(1), cfg) is None
    assert random_delete(["a"], random.Random(0), 0.99) == ["a"]


def test_augment_records_adds_marked_copies():
    records = [{"text": TEXT, "text_pair": None, "label": "pos", "_where": "d:1"}, {"text": "short one", "text_pair": None, "label": "neg", "_where": "d:2"}]
    out, counts = augment_records(records, "classification", AugmentConfig(eda=True, copies=2), seed=0)
    assert out[:2] == records and len(out) == 4
    assert all(r["_augmented"] in ("synonym", "swap", "delete") and r["_where"] == "d:1" for r in out[2:])
    assert counts["eda_skipped_short"] == 1


def test_oversample_balances_classes():
    records = [{"text": str(i), "label": "a" if i < 6 else "b"} for i in range(8)]
    extra = oversample(records, random.Random(0))
    assert len(extra) == 4 and all(r["label"] == "b" and r["_augmented"] == "oversample" for r in extra)


def test_instruction_chat_round_trip():
    record = {"instruction": "Summarise", "input": "", "output": "Short.", "system": "Be brief.", "_where": "i:1"}
    chat = instruction_to_chat(record)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant"] and chat["_where"] == "i:1"
    assert chat_to_instruction(chat) == record
    with_input = instruction_to_chat(dict(record, input="Long text", system=None))
    assert with_input["messages"][0] == {"role": "user", "content": "Summarise\n\nLong text"}


def test_multi_turn_chat_does_not_become_an_instruction():
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 2, "_where": "c:3"}
    with pytest.raises(UserError, match="c:3"):
        chat_to_instruction(chat)


def test_sharegpt_openai_round_trip():
    share = {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    openai = sharegpt_to_openai(share)
    assert [m["role"] for m in openai["messages"]] == ["system", "user", "assistant"]
    assert openai_to_sharegpt(openai) == share
    with pytest.raises(UserError, match="robot"):
        sharegpt_to_openai({"conversations": [{"from": "robot", "value": "x"}], "_where": "s:1"})


def test_csv_to_classification(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('review,score\n"Nice, tasty",great\n"multi\nline",other \n')
    records = csv_to_classification(path, "review", "score")
    assert records == [
        {"text": "Nice, tasty", "text_pair": None, "label": "great", "_where": f"{path}:2"},
        {"text": "multi\nline", "text_pair": None, "label": "other", "_where": f"{path}:3"},  # its first line
    ]
    semi = tmp_path / "export.csv"  # the training loaders' reader: a spreadsheet's ';' export with a BOM
    semi.write_bytes("review;score\r\nPreis 3,50;great\r\n".encode("utf-8-sig"))
    assert csv_to_classification(semi, "review", "score")[0]["text"] == "Preis 3,50"
    with pytest.raises(UserError, match="no column 'text'"):
        csv_to_classification(path, "text", "score")
