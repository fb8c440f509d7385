"""Every supported source kind, source.limit, and every user-fixable read error names file and line."""

from __future__ import annotations

import json

import pytest

from lmforge.config.schema import SourceConfig
from lmforge.data.sources import read_source
from lmforge.errors import UserError


def read(path, limit=None, text=False, split=None):
    return read_source(SourceConfig(path=str(path), limit=limit, split=split), text_format=text)


def test_jsonl_rows_carry_file_and_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    out = read(f)
    assert [r for r, _ in out.rows] == [{"a": 1}, {"a": 2}]
    assert [w for _, w in out.rows] == [f"{f}:1", f"{f}:3"]
    assert out.files == [f]


def test_json_list_and_object_with_one_list(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps([{"x": "1"}, {"x": "2"}]))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"version": 2, "data": [{"x": "3"}]}))
    assert [r["x"] for r, _ in read(a).rows] == ["1", "2"]
    rows = read(b).rows
    assert rows == [({"x": "3"}, f"{b}:row 1")]


def test_json_lines_under_a_json_name_are_read_as_json_lines(tmp_path):
    """`datasets`' Dataset.to_json writes JSON Lines into a .json file."""
    f = tmp_path / "export.json"
    f.write_text('{"a": 1}\n{"a": 2}\n\n{"a": 3}\n')
    assert read(f).rows == [({"a": 1}, f"{f}:1"), ({"a": 2}, f"{f}:2"), ({"a": 3}, f"{f}:4")]
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(UserError, match="malformed JSON") as err:
        read(bad)
    assert err.value.where == f"{bad}:2"
    one = tmp_path / "one.json"
    one.write_text('{"a": 1, "b": "x"}\n')  # one-record JSON Lines
    assert read(one).rows == [({"a": 1, "b": "x"}, f"{one}:1")]
    broken = tmp_path / "broken.json"
    broken.write_text('[{"a": 1}] x')  # not a second document at a line start: still malformed JSON
    with pytest.raises(UserError, match="malformed JSON: Extra data"):
        read(broken)


def test_json_object_with_two_lists_is_an_error(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps({"a": [], "b": []}))
    with pytest.raises(UserError, match="exactly one list"):
        read(f)


def test_csv_with_quoted_multiline_cells_and_line_numbers(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('text,label\n"two\nlines",pos\nplain,neg\n', encoding="utf-8")
    rows = read(f).rows
    assert rows[0] == ({"text": "two\nlines", "label": "pos"}, f"{f}:2")
    assert rows[1] == ({"text": "plain", "label": "neg"}, f"{f}:4")


def test_spreadsheet_csv_delimiters_are_read_off_the_header(tmp_path):
    """Excel in locales with a decimal comma writes ';' (with a BOM and CRLF); .tsv files hold tabs."""
    from lmforge.data.sources import csv_delimiter

    semi = tmp_path / "export.csv"
    semi.write_bytes("text;label\r\nPreis 3,50 EUR, gut;positiv\r\n\"a;b\";negativ\r\n".encode("utf-8-sig"))
    assert [r for r, _ in read(semi).rows] == [{"text": "Preis 3,50 EUR, gut", "label": "positiv"},
                                               {"text": "a;b", "label": "negativ"}]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabel\nx, y; z\tpos\n", encoding="utf-8")
    assert read(tsv).rows == [({"text": "x, y; z", "label": "pos"}, f"{tsv}:2")]
    # a comma in the header decides; a quoted name's characters do not count; one column reads as comma-separated
    assert csv_delimiter("text,label;x") == "," and csv_delimiter('"a,b";label') == ";"
    assert csv_delimiter("text") == "," and csv_delimiter("a|b|c") == "|"


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["x", "y"], "label": [0, 1]}), f)
    rows = read(f).rows
    assert rows[1] == ({"text": "y", "label": 1}, f"{f}:row 2")


def test_single_text_file_is_split_into_paragraphs(tmp_path):
    f = tmp_path / "book.txt"
    f.write_text("first para\nstill first\n\n\nsecond\r\n\r\nthird\n", encoding="utf-8")
    rows = read(f, text=True).rows
    assert [r["text"] for r, _ in rows] == ["first para\nstill first", "second", "third"]
    assert [w for _, w in rows] == [f"{f}:1", f"{f}:5", f"{f}:7"]


def test_folder_reads_supported_files_sorted_and_recursively(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.md").write_text("doc b\n\nstill b")
    (tmp_path / "sub" / "a.txt").write_text("doc a")
    (tmp_path / ".hidden.txt").write_text("skip me")
    (tmp_path / "notes.bin").write_bytes(b"\x00")
    out = read(tmp_path, text=True)
    assert [r["text"] for r, _ in out.rows] == ["doc b\n\nstill b", "doc a"]  # one record per file
    assert out.files == [tmp_path / "b.md", tmp_path / "sub" / "a.txt"]


def test_folder_without_text_format_skips_text_files(tmp_path):
    (tmp_path / "README.md").write_text("about")
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n')
    assert read(tmp_path).files == [tmp_path / "d.jsonl"]


def test_limit_keeps_the_first_rows_and_stops_reading(tmp_path):
    (tmp_path / "1.jsonl").write_text('{"i": 1}\n{"i": 2}\n')
    (tmp_path / "2.jsonl").write_text("not json at all\n")  # never reached
    out = read(tmp_path, limit=2)
    assert [r["i"] for r, _ in out.rows] == [1, 2]
    assert out.files == [tmp_path / "1.jsonl"]


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c"]})
    ds.save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": ds, "validation": ds.select([0])}).save_to_disk(str(tmp_path / "dict"))
    one = read(tmp_path / "one")
    assert [r["text"] for r, _ in one.rows] == ["a", "b", "c"]
    assert one.files and all(f.suffix == ".arrow" for f in one.files)
    assert len(read(tmp_path / "dict").rows) == 3  # default split: train
    assert len(read(tmp_path / "dict", split="validation").rows) == 1
    with pytest.raises(UserError, match="did you mean 'validation'"):
        read(tmp_path / "dict", split="validaton")


def test_class_label_columns_give_their_names_and_minus_one_is_no_label(tmp_path):
    import datasets

    from lmforge.config.schema import DataConfig
    from lmforge.data.records import to_records

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"]),
                                  "score": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict({"sentence": ["bad", "good", "unlabelled"], "label": [0, 1, -1],
                                     "score": [0, 1, 2]}, features=features)
    ds.save_to_disk(str(tmp_path / "sst"))
    rows = read(tmp_path / "sst").rows
    assert [r["label"] for r, _ in rows] == ["negative", "positive", None]
    assert [r["score"] for r, _ in rows] == [0, 1, 2]  # a plain integer column is left alone
    data = DataConfig(format="classification", train="unused", columns={"text": "sentence"})
    assert [r["label"] for r in to_records(rows[:2], data)] == ["negative", "positive"]
    with pytest.raises(UserError, match="empty label in column 'label'") as err:
        to_records(rows, data)
    assert err.value.where.endswith("sst:row 3")
    # the same names from a Parquet file datasets wrote (hub Parquet exports carry the features)
    ds.to_parquet(str(tmp_path / "sst.parquet"))
    assert [r["label"] for r, _ in read(tmp_path / "sst.parquet").rows] == ["negative", "positive", None]


def test_malformed_json_line_names_file_line_and_error(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\n{"a": 2,}\n')
    with pytest.raises(UserError) as err:
        read(f)
    assert err.value.where == f"{f}:2"
    assert "malformed JSON" in str(err.value) and "property name" in str(err.value)


def test_non_utf8_file_gives_byte_offset_and_hint(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_bytes(b'{"a": "ok"}\n{"a": "caf\xe9"}\n')
    with pytest.raises(UserError) as err:
        read(f)
    assert err.value.where == f"{f}:2"
    assert "byte offset 22" in str(err.value)
    assert "UTF-8" in err.value.hint
    c = tmp_path / "d.csv"
    c.write_bytes(b"text\ncaf\xe9\n")
    with pytest.raises(UserError, match="byte offset 8"):
        read(c)


def test_unsupported_extension(tmp_path):
    f = tmp_path / "d.xlsx"
    f.write_bytes(b"PK")
    with pytest.raises(UserError, match="unsupported file type '.xlsx'") as err:
        read(f)
    assert err.value.hint.startswith("save the sheet as CSV UTF-8") and ".csv" in err.value.hint
    other = tmp_path / "d.xml"
    other.write_text("<x/>")
    with pytest.raises(UserError) as err:
        read(other)
    assert err.value.hint.startswith("supported: .jsonl")


def test_text_file_outside_text_format_is_an_error(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text("hello")
    with pytest.raises(UserError, match="data.format: text"):
        read(f)


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read(tmp_path / "missing.jsonl")


def test_unreachable_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="neither a local file/folder nor reachable on the hub"):
        read("someone/surely-not-a-local-dataset-xyz")


def test_empty_folder(tmp_path):
    with pytest.raises(UserError, match="no data files"):
        read(tmp_path)


def test_a_shell_pattern_reads_the_matching_files_like_a_folder(tmp_path):
    from lmforge.config import parse_config
    from lmforge.config.inputs import input_paths

    (tmp_path / "parts" / "2026").mkdir(parents=True)
    (tmp_path / "parts" / "b.jsonl").write_text('{"x": "b"}\n')
    (tmp_path / "parts" / "a.jsonl").write_text('{"x": "a"}\n')
    (tmp_path / "parts" / "2026" / "c.jsonl").write_text('{"x": "c"}\n')
    (tmp_path / "parts" / "notes.txt").write_text("not data\n")
    out = read(tmp_path / "parts" / "*.jsonl")
    assert [r["x"] for r, _ in out.rows] == ["a", "b"] and out.files == sorted(out.files)
    assert [r["x"] for r, _ in read(tmp_path / "parts" / "**" / "*.jsonl").rows] == ["c", "a", "b"]
    with pytest.raises(UserError, match=r"no data file matches this pattern \(matched, not data files: notes.txt\)"):
        read(tmp_path / "parts" / "*.txt")  # plain text counts only for data.format text
    assert [r["text"].strip() for r, _ in read(tmp_path / "parts" / "*.txt", text=True).rows] == ["not data"]
    # the matched files are inputs: no output folder may be or hold them
    config = parse_config({"model": {"name": "m"}, "data": {"format": "text", "train": str(tmp_path / "parts" / "*.jsonl")}})
    assert {tmp_path / "parts" / "a.jsonl", tmp_path / "parts" / "b.jsonl"} <= set(input_paths(config))
