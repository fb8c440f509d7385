"""What a run says about its data beyond the counts (lmforge.data.health): exact copies in held-out parts, small
parts in distinct examples, suspicious labels; and that ``lmforge data preview`` and a run say it."""

from __future__ import annotations

import re
from pathlib import Path

from lmforge.config import parse_config
from lmforge.data.health import data_warnings, distinct_records, label_warnings
from lmforge.data.splits import Splits
from lmforge.pipeline.session import describe_splits
from lmforge.pipeline.single import SingleTask


def _chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def _said(splits: Splits, data_format: str = "chat") -> list[str]:
    """What open_session says: the counts, then the task's own lines."""
    config = parse_config({"model": {"name": "m"}, "data": {"format": data_format, "train": "t.jsonl"}})
    lines: list[str] = []
    describe_splits(splits, config, lines.append)
    SingleTask(splits, config.data).describe(lines.append)
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


def test_held_out_files_that_overlap_train_are_named_as_exact_copies():
    def chat(i, where):
        return {**_chat(f"question number {i} about the order status?", f"answer {i}."), "_where": where}

    train = [chat(i, f"t.jsonl:{i + 1}") for i in range(80)]
    test = [chat(i, f"test.jsonl:{i + 1}") for i in range(0, 60, 2)] + [chat(100 + i, f"test.jsonl:{31 + i}")
                                                                       for i in range(30)]
    lines = _said(Splits(train, [chat(200 + i, "v") for i in range(60)], test, [Path("t.jsonl")]))
    copies = next(line for line in lines if "also training examples" in line)
    assert "test 30 of 60 (e.g. test.jsonl:1 = t.jsonl:1)" in copies and "validation" not in copies
    # the exact copies are not checked again as near copies: the near-copy count is out of the 30 others
    near = next(line for line in lines if line.strip().startswith("near copies"))
    assert re.search(r"test \d+ of 30\b", near), near
    clean = _said(Splits(train, [chat(200 + i, "v") for i in range(60)], test[30:], [Path("t.jsonl")]))
    assert not any("also training examples" in line for line in clean)


def test_distinct_data_says_nothing_about_copies():
    splits = Splits([_chat(f"q{i}", "a") for i in range(80)], [_chat(f"v{i}", "a") for i in range(60)],
                    [_chat(f"t{i}", "a") for i in range(60)], [Path("t.jsonl")])
    assert not any("exact copies" in line or "small data" in line for line in _said(splits))
    # a record is its text: the same question with another answer is another example
    assert distinct_records([_chat("a", "b"), _chat("a", "c"), _chat("a", "b")], "chat") == 2


def test_label_spelling_variants_and_single_example_classes_are_named():
    records = ([{"text": f"good {i}", "label": "positive"} for i in range(40)]
               + [{"text": f"bad {i}", "label": "negative"} for i in range(40)]
               + [{"text": "meh", "label": "Positive "}, {"text": "hm", "label": "postive"},
                  {"text": "?", "label": "neutral"}])
    lines = label_warnings(records)
    assert any("'Positive ' (1 example) looks like 'positive' (40)" in line for line in lines)
    assert any("'postive' (1 example) looks like 'positive' (40)" in line for line in lines)
    assert lines[-1].startswith("labels with a single example: 'Positive ', 'neutral', 'postive'")
    assert not any("'negative'" in line and "looks like" in line for line in lines)
    clean = [r for r in records if r["label"] in ("positive", "negative")]
    assert label_warnings(clean) == [] and label_warnings([{"text": "x"}]) == []
    # two real classes that merely look alike are not a typo of each other (neither is rare)
    alike = [{"text": str(i), "label": f"class_{i % 2 + 1}"} for i in range(40)]
    assert label_warnings(alike) == []
    # a case variant is one even when it is common
    cased = clean + [{"text": f"Good {i}", "label": "Positive"} for i in range(20)]
    assert any("'Positive' (20 examples) looks like 'positive' (40)" in line for line in label_warnings(cased))


def test_a_run_without_data_prepare_says_the_label_warnings():
    train = [{"text": f"good {i}", "label": "positive"} for i in range(60)] + [{"text": "x", "label": "Positive"}]
    held = [{"text": f"bad {i}", "label": "negative"} for i in range(60)]
    splits = Splits(train, held, list(held), [Path("t.csv")])
    lines = _said(splits, "classification")
    assert any("'Positive' (1 example) looks like 'positive' (60)" in line for line in lines)
    # with data.prepare its label check has dealt with labels: only copies and sizes are said
    assert not any("looks like" in line for line in data_warnings(splits, "classification", prepared=True))


def test_data_preview_starts_with_what_a_run_says_about_its_data(tiny_llama_dir, tmp_path):
    import json

    from lmforge.pipeline import run_preview

    data = tmp_path / "chats.jsonl"
    rows = [_chat(f"question {i}?", f"answer {i}.") for i in range(6)] * 10  # six chats, ten times each
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = parse_config({"model": {"name": str(tiny_llama_dir)}, "data": {"format": "chat", "train": str(data)},
                           "method": {"name": "lora"}})
    text = run_preview(config, n=1)
    head, _, examples = text.partition("\n\n")
    assert head.startswith("data: ") and "exact copies:" in head and "distinct" in head
    assert examples.startswith("--- example 1")


def test_data_preview_shows_the_prepared_examples_and_keeps_nothing(tiny_llama_dir, tmp_path, monkeypatch):
    """With data.prepare the preview is its output (what the run trains on): redacted, deduplicated, split; it is
    prepared in a temporary folder that is removed, so nothing appears beside the data or in the run folder."""
    import json
    import tempfile

    from lmforge.pipeline import run_preview

    mine, scratch = tmp_path / "mine", tmp_path / "scratch"
    mine.mkdir(), scratch.mkdir()
    rows = [_chat(f"I am customer {i}, write to me at user{i}@mail.com about order {i}?", f"Sure, order {i}.")
            for i in range(30)]
    rows += rows[:5]  # exact copies: data.prepare keeps the first
    (mine / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = parse_config({"model": {"name": str(tiny_llama_dir)},
                           "data": {"format": "chat", "train": str(mine / "chats.jsonl"), "prepare": {"dedup": {"near": False}}},
                           "run": {"output_dir": str(mine / "runs")}, "method": {"name": "lora"}})
    monkeypatch.chdir(mine)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    text = run_preview(config, n=30)
    head, _, examples = text.partition("\n\n")
    assert head.startswith("data.prepare, as the run will apply it (removed: dedup_exact 5; changed: pii_redact 35; "
                           "found: pii_email 35; 30 examples kept)")
    counts = next(line for line in head.splitlines() if line.startswith("data: "))
    import re

    assert sum(map(int, re.findall(r"(\d+) (?:train|validation|test)", counts))) == 30  # 35 records, 5 copies
    assert "exact copies" not in head  # removed by the prepare step, not warned about
    assert "@mail.com" not in examples and examples.count("<EMAIL>") == examples.count("--- example")
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before
    assert not any(scratch.iterdir())  # the temporary preparation is gone
