"""load_splits: seeded deterministic eval split, stratification, explicit eval source, empty data."""

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


def test_split_is_deterministic_and_disjoint(tmp_path):
    train = write(tmp_path / "t.jsonl", [{"text": f"doc {i}"} for i in range(50)])
    cfg = DataConfig(format="text", train=train, eval_fraction=0.2)
    a, b, c = load_splits(cfg, 1), load_splits(cfg, 1), load_splits(cfg, 2)
    assert a == b
    assert a.eval != c.eval
    assert len(a.eval) == 10 and len(a.train) == 40
    assert not {r["text"] for r in a.eval} & {r["text"] for r in a.train}
    assert a.files == [tmp_path / "t.jsonl"]


def test_classification_split_is_stratified(tmp_path):
    rows = [{"text": f"t{i}", "label": "a" if i < 80 else "b"} for i in range(100)]
    cfg = DataConfig(format="classification", train=write(tmp_path / "t.jsonl", rows), eval_fraction=0.1)
    split = load_splits(cfg, 0)
    assert Counter(r["label"] for r in split.eval) == {"a": 8, "b": 2}
    assert len(split.train) == 90


def test_at_least_one_eval_example_and_fewer_than_two_is_an_error(tmp_path):
    cfg = DataConfig(format="text", train=write(tmp_path / "t.jsonl", [{"text": "x"}, {"text": "y"}]))
    split = load_splits(cfg, 0)
    assert len(split.eval) == 1 and len(split.train) == 1
    cfg = DataConfig(format="text", train=write(tmp_path / "u.jsonl", [{"text": "x"}]))
    with pytest.raises(UserError, match="cannot hold out an eval set"):
        load_splits(cfg, 0)


def test_explicit_eval_source_and_files(tmp_path):
    train = write(tmp_path / "t.jsonl", [{"text": "a"}, {"text": "b"}, {"text": "c"}])
    ev = write(tmp_path / "e.jsonl", [{"text": "z"}])
    split = load_splits(DataConfig(format="text", train=train, eval={"path": ev}), 0)
    assert [r["text"] for r in split.train] == ["a", "b", "c"]
    assert [r["text"] for r in split.eval] == ["z"]
    assert split.files == [tmp_path / "t.jsonl", tmp_path / "e.jsonl"]


def test_limit_and_empty_dataset(tmp_path):
    train = write(tmp_path / "t.jsonl", [{"text": str(i)} for i in range(10)])
    split = load_splits(DataConfig(format="text", train={"path": train, "limit": 4}), 0)
    assert len(split.train) + len(split.eval) == 4
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        load_splits(DataConfig(format="text", train=str(tmp_path / "empty.jsonl")), 0)
