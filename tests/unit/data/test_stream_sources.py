"""Lazy reading of JSONL / CSV / plain-text sources: same records as the eager loader, bounded memory."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import sys
import tracemalloc

import pytest

from lmforge.config.load import parse_config
from lmforge.config.prepare import PrepareConfig
from lmforge.config.schema import DataConfig
from lmforge.data.prepare import run_prepare
from lmforge.data.records import to_records
from lmforge.data.splits import iter_records, load_records, load_records_lazily
from lmforge.errors import UserError

TRICKY_TEXT = (
    "\ufefffirst para\nstill first\n\n\nsecond\r\n\r\nthird\n \t\nfourth\n\n\n\nfifth\n \n \nsixth"
    "\n\nlone\rcarriage\n  indented\n\n"
)


def _old_paragraphs(path, column="text"):
    """The whole-file reader this module replaced: the oracle for the lazy paragraph reader."""
    text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    line = 1
    for block in re.split(r"(\n[ \t]*\n)", text):
        if block.strip() and not re.fullmatch(r"\n[ \t]*\n", block):
            lead = len(block) - len(block.lstrip("\n"))
            yield {column: block.strip("\n")}, f"{path}:{line + lead}"
        line += block.count("\n")


def _old_csv(path):
    """The whole-file CSV reader this module replaced (header line, blank rows skipped)."""
    reader = csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline=""))
    header = [h.strip() for h in next(reader)]
    start = reader.line_num + 1
    for values in reader:
        where, start = f"{path}:{start}", reader.line_num + 1
        if any(v.strip() for v in values):
            yield {h: (values[i] if i < len(values) else None) for i, h in enumerate(header)}, where


def _lazy(cfg: DataConfig) -> list[dict]:
    streams = load_records_lazily(cfg)
    return list(streams.train)


@pytest.mark.parametrize(
    "text",
    [TRICKY_TEXT, "", "\n\n", "one", "a\n\n", "\n\na\n \n\n \nb\n", "x\r\n\r\n\r\ny\r\n", "a\n\t\n\n\tb\n\n\n"],
)
def test_paragraphs_match_the_whole_file_reader(tmp_path, text):
    path = tmp_path / "book.txt"
    path.write_bytes(text.encode("utf-8"))
    cfg = DataConfig(format="text", train=str(path))
    expected = to_records(list(_old_paragraphs(path)), cfg)
    if not expected:
        with pytest.raises(UserError, match="the dataset is empty"):
            load_records_lazily(cfg)
        return
    assert _lazy(cfg) == expected == load_records(cfg)[0]


def test_csv_matches_the_whole_file_reader(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(
        b'\xef\xbb\xbfreview , score\r\n"two\r\nlines",pos\r\n,\r\nplain,neg\r\n"q ""x""",pos\rcr only,neg\n'
    )
    cfg = DataConfig(format="classification", train=str(path), columns={"text": "review", "label": "score"})
    expected = to_records(list(_old_csv(path)), cfg)
    assert [r["_where"].rsplit(":", 1)[1] for r in expected] == ["2", "5", "6", "7"]
    assert _lazy(cfg) == expected == load_records(cfg)[0]
    assert expected[0]["text"] == "two\r\nlines" and expected[2]["text"] == 'q "x"'


def test_jsonl_records_and_files_match_the_list_loader(tmp_path):
    train, held = tmp_path / "t.jsonl", tmp_path / "e.jsonl"
    train.write_text("".join(json.dumps({"q": f"ask {i}", "a": f"answer {i}"}) + ("\n\n" if i == 3 else "\n") for i in range(9)))
    held.write_text(json.dumps({"q": "held", "a": "out"}) + "\n")
    cfg = DataConfig(
        format="instruction", train=str(train), test=str(held), columns={"instruction": "q", "output": "a"}
    )
    eager_train, eager_eval, eager_files = load_records(cfg)
    streams = load_records_lazily(cfg)
    assert list(streams.train) == eager_train and list(streams.test) == eager_eval["test"] and streams.validation is None
    assert streams.files == eager_files == [train, held]
    assert streams.read == 10
    assert eager_train[4]["_where"] == f"{train}:6"  # the blank line still counts


def test_limit_stops_reading_before_a_later_bad_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\nnot json\n')
    cfg = DataConfig(format="text", train={"path": str(path), "limit": 2})
    records, files = iter_records(cfg.train, cfg, "data.train")
    assert [r["text"] for r in records] == ["a", "b"] and files == [path]


def test_errors_name_file_line_and_come_while_streaming(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(1000)) + '{"text": "x",}\n')
    cfg = DataConfig(format="text", train=str(path))
    records, _ = iter_records(cfg.train, cfg, "data.train")  # nothing past the first record read yet
    seen = 0
    with pytest.raises(UserError) as err:
        for _ in records:
            seen += 1
    assert seen == 1000 and err.value.where == f"{path}:1001" and "malformed JSON" in str(err.value)

    missing = tmp_path / "m.jsonl"
    missing.write_text('{"q": "x", "a": "y"}\n{"q": "x"}\n')
    cfg = DataConfig(format="instruction", train=str(missing), columns={"instruction": "q", "output": "a"})
    with pytest.raises(UserError) as err:
        _lazy(cfg)
    assert err.value.where == f"{missing}:2" and "field 'output'" in str(err.value)
    assert "data.columns.output" in err.value.hint


def test_bad_bytes_and_empty_inputs_fail_clearly(tmp_path):
    bad = tmp_path / "d.csv"
    bad.write_bytes(b"text\nok\ncaf\xe9\n")
    with pytest.raises(UserError) as err:
        _lazy(DataConfig(format="text", train=str(bad)))
    assert err.value.where == f"{bad}:3" and "byte offset 11" in str(err.value)
    for name, content in (("e.jsonl", "\n\n"), ("e.csv", "text\n"), ("e.txt", " \n\n")):
        (tmp_path / name).write_text(content)
        with pytest.raises(UserError, match="the dataset is empty") as err:
            load_records_lazily(DataConfig(format="text", train=str(tmp_path / name)))
        assert err.value.hint == "data.train must hold at least one record"


def _write_rows(path, n: int) -> None:
    rng = random.Random(0)
    vocab = [f"w{i}x" for i in range(3000)]
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            fh.write(json.dumps({"text": " ".join(rng.choice(vocab) for _ in range(30))}) + "\n")


def _list_size(path, sample: int) -> int:
    """Bytes the first ``sample`` records of ``path`` take held as a list of dicts (tracemalloc)."""
    cfg = DataConfig(format="text", train={"path": str(path), "limit": sample})
    tracemalloc.start()
    held = load_records(cfg)[0]
    size = tracemalloc.get_traced_memory()[0] + sys.getsizeof(held)
    tracemalloc.stop()
    assert len(held) == sample
    return size


def _prepare_peak(path, n: int, out) -> int:
    cfg = DataConfig(format="text", train=str(path))
    prepare_cfg = PrepareConfig(dedup={"near": False}, pii={"enabled": False})
    tracemalloc.start()
    try:
        records, files = iter_records(cfg.train, cfg, "data.train")
        result = run_prepare(records, "text", prepare_cfg, out, inputs=files, seed=0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert sum(result.counts.values()) == n


def test_preparing_a_file_streams_in_far_less_memory_than_its_records(tmp_path):
    """Peak traced memory of reading + preparing a JSONL file stays far below holding its records.

    Near-dedup and personal-data rules are off to keep the test fast (their per-example state is
    measured in tests/unit/data/prepare/test_stream.py); the reader, normalise, filters, exact
    dedup, split and leak checks all run.
    """
    n = 15_000
    path = tmp_path / "big.jsonl"
    _write_rows(path, n)
    small = tmp_path / "small.jsonl"
    _write_rows(small, 200)
    _prepare_peak(small, 200, tmp_path / "warm")  # imports and caches
    as_list = _list_size(path, 2_000) * n / 2_000
    peak = _prepare_peak(path, n, tmp_path / "out")
    print(f"peak {peak / 1e6:.1f} MB, as a list {as_list / 1e6:.1f} MB")
    assert peak < as_list / 4, (peak, as_list)


def test_standalone_prepare_reports_counts_and_training_gets_lists(tmp_path, tiny_llama_dir):
    from lmforge.pipeline.prepare import prepare_data, prepare_splits

    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": f"document number {i} says {i * 7}"}) + "\n" for i in range(60)))
    config = parse_config({
        "model": {"name": str(tiny_llama_dir)},
        "data": {"format": "text", "train": str(path), "prepare": {}},
    })
    said: list[str] = []
    result, files = prepare_data(config, out_dir=tmp_path / "a", say=said.append)
    assert files == [path] and sum(result.counts.values()) == 60
    assert said[0].startswith(f"prepare: 60 records -> train {result.counts['train']}, ")
    splits = prepare_splits(config, out_dir=tmp_path / "b", say=said.append)
    assert len(splits.train) == result.counts["train"] and len(splits.validation) == result.counts["validation"]
    assert len(splits.test) == result.counts["test"]
    assert splits.files == [path]


def test_no_held_out_example_left_says_which_rule_took_the_records(tmp_path, tiny_llama_dir):
    """Eight policy documents from one template: near-copy removal keeps one, and the error says so."""
    import pytest

    from lmforge.errors import UserError
    from lmforge.pipeline.prepare import prepare_data

    path = tmp_path / "docs.jsonl"
    template = "The tenant shall pay rent on the first day of each month, number {i}. Late fees apply after five days."
    path.write_text("".join(json.dumps({"text": template.format(i=i)}) + "\n" for i in range(8)))
    config = parse_config({"model": {"name": str(tiny_llama_dir)},
                           "data": {"format": "text", "train": str(path), "prepare": {}}})
    with pytest.raises(UserError, match=r"left no held-out example \(8 records -> train 1; removed: dedup_near 7") as err:
        prepare_data(config, out_dir=tmp_path / "out", say=lambda _m: None)
    assert err.value.hint.startswith("near-copy removal took most records") and "dedup.near: false" in err.value.hint
    distinct = tmp_path / "distinct.jsonl"  # too few records, not copies: only the split advice
    distinct.write_text(json.dumps({"text": "one lone document about rent"}) + "\n")
    config = parse_config({"model": {"name": str(tiny_llama_dir)},
                           "data": {"format": "text", "train": str(distinct), "prepare": {}}})
    with pytest.raises(UserError, match="left no held-out example") as err:
        prepare_data(config, out_dir=tmp_path / "out2", say=lambda _m: None)
    assert err.value.hint.startswith("raise data.split.validation")
