"""What a run says about its splits when held-out examples are exact copies of each other."""

from __future__ import annotations

from pathlib import Path

from lmforge.config import parse_config
from lmforge.data.splits import Splits
from lmforge.pipeline.session import describe_splits, distinct_records


def _chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def _said(splits: Splits) -> list[str]:
    config = parse_config({"model": {"name": "m"}, "data": {"format": "chat", "train": "t.jsonl"}})
    lines: list[str] = []
    describe_splits(splits, config, lines.append)
    return lines


def test_copies_in_held_out_data_are_named_and_small_data_counts_distinct_examples():
    train = [_chat(f"q{i}", "a") for i in range(80)]
    test = [_chat("where is my order?", "Account > Orders.")] * 10
    validation = [_chat(f"v{i}", "a") for i in range(60)] + [_chat("v0", "a")] * 3
    lines = _said(Splits(train, validation, test, [Path("t.jsonl")]))
    assert lines[0].startswith("data: 80 train / 63 validation / 10 test examples (chat)")
    copies = next(line for line in lines if "exact copies" in line)
    assert "63 validation examples are 60 distinct" in copies and "10 test examples are 1 distinct" in copies
    assert "count each distinct example once" in copies
    assert any(line.strip() == "small data (distinct examples): test 1; intervals will be wide (shares: data.split)"
               for line in lines)


def test_distinct_data_says_nothing_about_copies():
    splits = Splits([_chat(f"q{i}", "a") for i in range(80)], [_chat(f"v{i}", "a") for i in range(60)],
                    [_chat(f"t{i}", "a") for i in range(60)], [Path("t.jsonl")])
    assert not any("exact copies" in line or "small data" in line for line in _said(splits))
    # a record is its text: the same question with another answer is another example
    assert distinct_records([_chat("a", "b"), _chat("a", "c"), _chat("a", "b")], "chat") == 2
