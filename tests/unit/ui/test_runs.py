"""Reading run folders: the partial YAML parse, the metrics tail, the caches and the charts."""

from __future__ import annotations

import json
import os

import yaml

from lmforge.ui.charts import line_chart
from lmforge.ui.runs import FileCache, MetricsTail, RunIndex, curves, top_sections


def test_top_sections_equal_a_full_parse_of_a_resolved_config(tmp_path):
    from tests.fixtures.runs import write_run

    text = (write_run(tmp_path, "r", html=False) / "config.yaml").read_text()
    full = yaml.safe_load(text)
    keys = ("model", "data", "method", "objective")
    assert top_sections(text, keys) == {k: full[k] for k in keys}


def test_top_sections_declines_what_is_not_a_plain_block_mapping():
    assert top_sections("{model: {name: x}}", ("model",)) is None
    assert top_sections("  indented: first\n", ("model",)) is None
    assert top_sections("- a\n- b\n", ("model",)) is None
    assert top_sections("# c\nmodel:\n  name: x  # note\n\ntrain: {lr: 1}\n", ("model",)) == {"model": {"name": "x"}}


def test_metrics_tail_reads_appends_waits_for_torn_lines_and_restarts_on_rewrite(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail()
    assert tail.records(tmp_path) == []
    path.write_text(json.dumps({"step": 1, "event": "train", "loss": 2.0}) + "\n" + '{"step": 2, "ev')
    assert [r["step"] for r in tail.records(tmp_path)] == [1]
    with open(path, "a") as fh:
        fh.write('ent": "eval", "eval_loss": 1.5}\n')
    assert [r["step"] for r in tail.records(tmp_path)] == [1, 2]
    path.write_text(json.dumps({"step": 1, "event": "train", "loss": 9.0}) + "\n")  # a resume rewrote it
    train, evals = curves(tail.records(tmp_path))
    assert train == {"loss": [(1, 9.0)]} and evals == {}


def test_file_cache_rereads_only_changed_files(tmp_path):
    path, calls = tmp_path / "x.json", []

    def parse(data: bytes):
        calls.append(data)
        return json.loads(data)

    cache = FileCache()
    path.write_text('{"a": 1}')
    assert cache.get(path, parse) == {"a": 1} and cache.get(path, parse) == {"a": 1} and len(calls) == 1
    path.write_text('{"a": 22}')
    os.utime(path, ns=(1, 1))  # even with an older mtime: the size changed
    assert cache.get(path, parse) == {"a": 22} and len(calls) == 2
    path.write_text("{bad")
    assert cache.get(path, parse) is None and cache.get(tmp_path / "missing", parse) is None


def test_index_skips_hidden_and_config_less_folders(tmp_path):
    from tests.fixtures.runs import write_run

    write_run(tmp_path, "a", html=False)
    (tmp_path / ".trash").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "launched").mkdir()
    (tmp_path / "launched" / "launch.yaml").write_text((tmp_path / "a" / "config.yaml").read_text())
    assert sorted(RunIndex(tmp_path).names()) == ["a", "launched"]


def test_line_chart_draws_each_series_and_nothing_without_points():
    svg = line_chart({"a <b>": [(1, 2.0), (2, 1.0)], "c": [(1, 3.0)]}, title="t")
    assert svg.startswith("<svg") and svg.count("<polyline") == 1 and svg.count("<circle") == 2
    assert "a &lt;b&gt;" in svg and "<b>" not in svg
    assert line_chart({"a": []}) == "" and line_chart({"a": [(1, float("nan"))]}) == ""
