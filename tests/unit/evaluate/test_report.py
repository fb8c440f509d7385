"""report.md / results.json writing and the before -> after comparison table."""

from __future__ import annotations

import json
import math

from lmforge.evaluate.metrics import classification_metrics
from lmforge.evaluate.report import format_comparison, write_report


def _report():
    return {
        "model": "tiny-llama",
        "method": "lora",
        "objective": "causal_lm",
        "data": {"format": "instruction", "train_examples": 12, "eval_examples": 4},
        "before": {"eval_loss": 4.0, "perplexity": math.exp(4.0), "eval_examples": 4},
        "after": {"eval_loss": 2.5, "perplexity": math.exp(2.5), "eval_examples": 4},
        "samples": [{"prompt": "user: what is a bond?", "reference": "a loan", "before": "the the", "after": "a loan ```x```"}],
        "train": {"steps": 6, "best_step": 3},
    }


def test_write_report_writes_both_files_that_parse(tmp_path):
    path = write_report(tmp_path, _report())
    assert path == tmp_path / "report.md"
    assert json.loads((tmp_path / "results.json").read_text()) == _report()
    md = path.read_text()
    assert "| eval_loss | 4.0000 | 2.5000 | -1.5 (better) |" in md
    assert "what is a bond?" in md and "a loan ```x```" in md and "best_step 3" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "results.json"]  # no temp files left


def test_empty_reply_is_shown_as_empty(tmp_path):
    report = _report()
    report["samples"][0]["after"] = ""
    md = write_report(tmp_path, report).read_text()
    assert "**after**\n\n*(empty)*" in md


def test_non_finite_values_become_null_in_results(tmp_path):
    report = _report()
    report["before"]["perplexity"] = math.inf
    write_report(tmp_path, report)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["before"]["perplexity"] is None
    assert "inf" in (tmp_path / "report.md").read_text()


def test_classification_report_has_per_class_and_confusion_matrix(tmp_path):
    after = classification_metrics([0, 1, 1], [0, 1, 0], ["great", "other"])
    report = {"model": "m", "before": None, "after": after, "samples": []}
    md = write_report(tmp_path, report).read_text()
    assert "| great | 1.0000 | 0.5000 | 0.6667 | 2 |" in md
    assert "| gold \\ predicted | great | other |" in md and "| great | 1 | 1 |" in md


def test_format_comparison_table():
    text = format_comparison({"eval_loss": 3.0, "accuracy": 0.5, "per_class": {}}, {"eval_loss": 2.0, "accuracy": 0.75})
    lines = text.splitlines()
    assert lines[0].split(" | ") == ["metric   ", "before", "after ", "change"]
    rows = {line.split(" | ")[0].strip(): [c.strip() for c in line.split(" | ")[1:]] for line in lines[2:]}
    assert rows["eval_loss"] == ["3.0000", "2.0000", "-1 (better)"]
    assert rows["accuracy"] == ["0.5000", "0.7500", "+0.25 (better)"]
    assert "per_class" not in rows


def test_format_comparison_without_before_shows_dashes():
    text = format_comparison(None, {"eval_loss": 2.0, "perplexity": 7.389})
    assert text.splitlines()[2].split() == ["eval_loss", "|", "-", "|", "2.0000"]
    assert "(better)" not in text
    worse = format_comparison({"f1_macro": 0.8}, {"f1_macro": 0.6})
    assert "(worse)" in worse
