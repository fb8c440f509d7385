"""load_splits: the one seeded train / validation / test engine, stratification, own sources, small data,
and the same split with or without data.prepare."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lmforge.config.schema import DataConfig
from lmforge.data.splits import load_splits
from lmforge.errors import UserError


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def texts(records):
    return {r["text"] for r in records}


def test_split_is_three_way_deterministic_and_disjoint(tmp_path):
    train = write(tmp_path / "t.jsonl", [{"text": f"doc {i}"} for i in range(50)])
    cfg = DataConfig(format="text", train=train, split={"validation": 0.2, "test": 0.1})
    a, b, c = load_splits(cfg, 1), load_splits(cfg, 1), load_splits(cfg, 2)
    assert a == b and (a.validation, a.test) != (c.validation, c.test)
    assert (len(a.train), len(a.validation), len(a.test)) == (35, 10, 5)
    assert not texts(a.train) & texts(a.validation) and not texts(a.train) & texts(a.test)
    assert not texts(a.validation) & texts(a.test) and a.reported == a.test
    assert a.files == [tmp_path / "t.jsonl"]


def test_order_of_the_records_does_not_matter(tmp_path):
    rows = [{"text": f"doc {i}"} for i in range(100)]
    a = load_splits(DataConfig(format="text", train=write(tmp_path / "a.jsonl", rows)), 3)
    b = load_splits(DataConfig(format="text", train=write(tmp_path / "b.jsonl", rows[::-1])), 3)
    for part in ("train", "validation", "test"):
        assert texts(getattr(a, part)) == texts(getattr(b, part))


def test_exact_copies_land_on_the_same_side(tmp_path):
    rows = [{"text": f"doc {i % 40}"} for i in range(120)]
    split = load_splits(DataConfig(format="text", train=write(tmp_path / "t.jsonl", rows)), 0)
    assert not texts(split.train) & (texts(split.validation) | texts(split.test))


def test_classification_split_is_stratified(tmp_path):
    rows = [{"text": f"t{i}", "label": "a" if i < 80 else "b"} for i in range(100)]
    cfg = DataConfig(format="classification", train=write(tmp_path / "t.jsonl", rows))
    split = load_splits(cfg, 0)
    assert Counter(r["label"] for r in split.validation) == {"a": 8, "b": 2}
    assert Counter(r["label"] for r in split.test) == {"a": 8, "b": 2}
    assert len(split.train) == 80


def test_tiny_data_and_a_single_record(tmp_path):
    cfg = DataConfig(format="text", train=write(tmp_path / "t.jsonl", [{"text": c} for c in "xyz"]))
    split = load_splits(cfg, 0)
    assert (len(split.train), len(split.validation), len(split.test)) == (1, 1, 1)
    cfg = DataConfig(format="text", train=write(tmp_path / "u.jsonl", [{"text": "x"}]))
    with pytest.raises(UserError, match="no held-out example"):
        load_splits(cfg, 0)


def test_own_validation_and_test_sources(tmp_path):
    train = write(tmp_path / "t.jsonl", [{"text": c} for c in "abcdefghij"])
    val = write(tmp_path / "v.jsonl", [{"text": "v"}])
    test = write(tmp_path / "e.jsonl", [{"text": "z"}])
    both = load_splits(DataConfig(format="text", train=train, validation=val, test=test), 0)
    assert len(both.train) == 10 and texts(both.validation) == {"v"} and texts(both.test) == {"z"}
    assert both.files == [tmp_path / "t.jsonl", tmp_path / "v.jsonl", tmp_path / "e.jsonl"]
    only_test = load_splits(DataConfig(format="text", train=train, test=test), 0)
    assert texts(only_test.test) == {"z"} and len(only_test.validation) == 1 and len(only_test.train) == 9


def test_zero_shares(tmp_path):
    train = write(tmp_path / "t.jsonl", [{"text": f"d{i}"} for i in range(20)])
    no_test = load_splits(DataConfig(format="text", train=train, split={"test": 0}), 0)
    assert not no_test.test and no_test.reported == no_test.validation and len(no_test.validation) == 2
    no_val = load_splits(DataConfig(format="text", train=train, split={"validation": 0}), 0)
    assert not no_val.validation and len(no_val.test) == 2


def test_limit_and_empty_dataset(tmp_path):
    train = write(tmp_path / "t.jsonl", [{"text": str(i)} for i in range(10)])
    split = load_splits(DataConfig(format="text", train={"path": train, "limit": 4}), 0)
    assert len(split.train) + len(split.validation) + len(split.test) == 4
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        load_splits(DataConfig(format="text", train=str(tmp_path / "empty.jsonl")), 0)


def test_same_split_with_or_without_data_prepare(tmp_path):
    """Clean, distinct data: data.prepare removes nothing, so both paths hold out the same records."""
    from lmforge.config.prepare import PrepareConfig
    from lmforge.data.prepare import run_prepare
    from lmforge.data.splits import load_records_lazily

    rows = [{"text": f"review number {i} says the product was {'good' if i % 3 else 'bad'} in my view",
             "label": "great" if i % 3 else "other"} for i in range(60)]
    cfg = DataConfig(format="classification", train=write(tmp_path / "t.jsonl", rows))
    plain = load_splits(cfg, 7)
    streams = load_records_lazily(cfg)
    prepare = PrepareConfig(dedup={"near": False}, pii={"types": []})
    result = run_prepare(streams.train, "classification", prepare, tmp_path / "out", inputs=[], seed=7, split=cfg.split)
    assert sum(result.counts.values()) == len(rows)  # nothing removed
    for part in ("train", "validation", "test"):
        assert texts(getattr(plain, part)) == texts(result.records(part)), part
