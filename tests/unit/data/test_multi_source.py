"""data.train as a list of sources, each with its own format and column mapping (collect step)."""

from __future__ import annotations

import csv
import json

import pytest
from pydantic import ValidationError

from lmforge.config.schema import DataConfig
from lmforge.data.formats import check_data_config
from lmforge.data.splits import load_splits
from lmforge.data.splits import load_records, load_records_lazily
from lmforge.errors import UserError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def test_sources_with_their_own_columns_are_collected_in_order(tmp_path):
    a = _csv(tmp_path / "shop.csv", ["review", "stars"], [["tasty", "great"], ["bland", "other"]])
    b = _jsonl(tmp_path / "support.jsonl", [{"body": "fast reply", "tag": "great"}])
    cfg = DataConfig(format="classification", train=[
        {"path": a, "columns": {"text": "review", "label": "stars"}},
        {"path": b, "columns": {"text": "body", "label": "tag"}},
    ])
    train, held, files = load_records(cfg)
    assert [(r["text"], r["label"]) for r in train] == [("tasty", "great"), ("bland", "other"), ("fast reply", "great")]
    assert [r["_where"].split(":")[0].rsplit("/", 1)[-1] for r in train] == ["shop.csv", "shop.csv", "support.jsonl"]
    assert held == {"validation": None, "test": None} and [f.name for f in files] == ["shop.csv", "support.jsonl"]


def test_instruction_source_is_converted_into_a_chat_run(tmp_path):
    chats = _jsonl(tmp_path / "chats.jsonl", [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}])
    alpaca = _jsonl(tmp_path / "alpaca.jsonl", [{"q": "add 2+2", "a": "4"}])
    cfg = DataConfig(format="chat", train=[chats, {"path": alpaca, "format": "instruction", "columns": {"instruction": "q", "output": "a"}}])
    streams = load_records_lazily(cfg)
    records = list(streams.train)
    assert records[0]["messages"][0] == {"role": "user", "content": "hi"}
    assert records[1]["messages"] == [{"role": "user", "content": "add 2+2"}, {"role": "assistant", "content": "4"}]
    assert records[1]["_where"].endswith("alpaca.jsonl:1")
    assert [f.name for f in streams.files] == ["chats.jsonl", "alpaca.jsonl"]


def test_split_over_several_sources_and_limits_per_source(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"text": f"a {i}"} for i in range(30)])
    b = _jsonl(tmp_path / "b.jsonl", [{"text": f"b {i}"} for i in range(30)])
    split = load_splits(DataConfig(format="text", train=[{"path": a, "limit": 10}, b], split={"validation": 0.2, "test": 0.05}), 0)
    texts = [r["text"] for r in split.train + split.validation + split.test]
    assert len(texts) == 40 and sum(t.startswith("a ") for t in texts) == 10


def test_bad_source_errors_name_the_source(tmp_path):
    good = _jsonl(tmp_path / "good.jsonl", [{"text": "x"}])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_records(DataConfig(format="text", train=[good, str(empty)]))
    assert "empty.jsonl" in str(err.value) and "data.train[1]" in str(err.value)
    wrong = _jsonl(tmp_path / "wrong.jsonl", [{"body": "x"}])
    with pytest.raises(UserError) as err:
        load_records(DataConfig(format="text", train=[good, wrong]))
    assert "wrong.jsonl:1" in str(err.value) and "missing column 'text'" in str(err.value)


def test_config_rejects_unconvertible_formats_unknown_columns_and_empty_lists(tmp_path):
    with pytest.raises(UserError, match=r"train\[1\]\.format: 'preference' records cannot be converted"):
        check_data_config(DataConfig(format="chat", train=["a.jsonl", {"path": "b.jsonl", "format": "preference"}]))
    with pytest.raises(UserError, match=r"train\[0\]\.columns\.txt: not a field of format 'text'"):
        check_data_config(DataConfig(format="text", train=[{"path": "a.jsonl", "columns": {"txt": "body"}}]))
    with pytest.raises(ValidationError, match="the list of sources is empty"):
        DataConfig(format="text", train=[])


def test_asset_sources_are_named_by_asset_not_by_their_shared_file_name():
    cfg = DataConfig(format="chat", train=[
        {"path": "asset:fiqa", "limit": 2, "format": "instruction", "columns": {"instruction": "question", "output": "answer"}},
        {"path": "asset:xsum", "limit": 2, "format": "instruction", "columns": {"instruction": "document", "output": "summary"}},
    ])
    records = load_records(cfg)[0]
    assert [r["_source"] for r in records] == ["asset:fiqa"] * 2 + ["asset:xsum"] * 2
    assert {r["_where"].rsplit(":", 1)[0].rsplit("/", 1)[-1] for r in records} == {"test.jsonl"}  # why: same file name
    assert all(r["messages"][-1]["role"] == "assistant" for r in records)
