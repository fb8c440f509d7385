"""report.md / results.json writing and the before -> after comparison table."""

from __future__ import annotations

import json
import math

from lmforge.evaluate.metrics import classification_metrics
from lmforge.evaluate.report import (comparison_rows, format_comparison, noise_tests, read_history, run_facts,
                                     write_report)


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
    results = json.loads((tmp_path / "results.json").read_text())
    assert {k: v for k, v in results.items() if k not in ("samples", "sample_flags")} == \
        {k: v for k, v in _report().items() if k != "samples"}
    assert results["samples"] == [{**_report()["samples"][0], "flags": {"before": [], "after": []}}]
    assert results["sample_flags"]["repetitive"] == {"before": 0, "after": 0}
    md = path.read_text()
    assert "| eval_loss | 4.0000 | 2.5000 | -1.5 (better) |" in md
    assert "what is a bond?" in md and "a loan ```x```" in md and "best checkpoint at step 3" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.md", "results.json"]  # no temp files left


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


def test_preference_metrics_read_in_the_direction_the_objective_pushes():
    """KTO pushing bad answers' rewards down, DPO the rejected answers' log-probs: 'better', not 'worse'."""
    text = format_comparison({"reward_undesirable": 0.0, "logps_rejected": -35.2, "logps_chosen": -92.8, "reward_desirable": 0.0},
                             {"reward_undesirable": -0.183, "logps_rejected": -119.2, "logps_chosen": -40.8, "reward_desirable": 1.67})
    rows = {line.split("|")[0].strip(): line for line in text.splitlines()}
    assert "(better)" in rows["reward_undesirable"] and "(better)" in rows["logps_rejected"]
    assert "(better)" in rows["logps_chosen"] and "(better)" in rows["reward_desirable"]


def test_format_comparison_without_before_shows_dashes():
    text = format_comparison(None, {"eval_loss": 2.0, "perplexity": 7.389})
    assert text.splitlines()[2].split() == ["eval_loss", "|", "-", "|", "2.0000"]
    assert "(better)" not in text
    worse = format_comparison({"f1_macro": 0.8}, {"f1_macro": 0.6})
    assert "(worse)" in worse


def _per_example(losses, counts, correct=None):
    out = {"loss": losses, "count": counts}
    if correct is not None:
        out["correct"] = correct
    return out


def test_paired_tests_say_beyond_noise_or_within_noise(tmp_path):
    counts = [5] * 40
    before = {"eval_loss": 4.0, "accuracy": 0.5,
              "per_example": _per_example([4.0 + 0.01 * (i % 7) for i in range(40)], counts, [i % 2 for i in range(40)])}
    after = {"eval_loss": 2.0, "accuracy": 0.5,
             "per_example": _per_example([2.0 + 0.01 * (i % 5) for i in range(40)], counts, [(i + 1) % 2 for i in range(40)])}
    rows = {r[0]: r for r in comparison_rows(before, after)}
    assert rows["eval_loss"][3].endswith("(better, beyond noise, p<0.001)") and " [-" in rows["eval_loss"][3]
    assert rows["accuracy"][3].startswith("0 [") and rows["accuracy"][3].endswith("(within noise, p=1)")
    assert rows["eval_loss"][1].startswith("4 [")  # values carry their interval (as the HTML writes them)
    tests = noise_tests(before, after)
    assert tests["eval_loss"]["before"]["low"] <= 4.0 + 0.01 * 3 <= tests["eval_loss"]["before"]["high"]
    assert not tests["eval_loss"]["within_noise"] and tests["accuracy"]["within_noise"]
    report = {"model": "m", "before": before, "after": after, "samples": []}
    md = write_report(tmp_path, report).read_text()
    assert "eval_loss:" in md and "change beyond noise" in md and "accuracy:" in md and "change within noise" in md
    page = (tmp_path / "report.html").read_text()
    assert "Change before -&gt; after" in page and "better, beyond noise" in page and "within noise" in page
    assert "p=0<" not in page and "p&lt;0.001" in page  # as the Markdown says it
    assert "perplexity" in page or "perplexity" not in after


def test_copies_of_one_example_are_within_noise_and_said_in_the_table():
    """Ten held-out rows that are one example ten times (same id): the drop is one example's, not evidence."""
    from lmforge.evaluate.intervals import system_intervals

    sides = {}
    for side, loss in (("before", 3.24), ("after", 2.87)):
        rows = {"id": ["5334fa2b164dcfed"] * 10, **_per_example([loss] * 10, [22] * 10)}
        sides[side] = {"eval_loss": loss, "eval_examples": 10, "per_example": rows,
                       "intervals": system_intervals(rows)}
    rows = {r[0]: r for r in comparison_rows(sides["before"], sides["after"])}
    assert rows["eval_loss"][3].endswith("(better, within noise, p=1)")
    assert rows["eval_examples"][1] == rows["eval_examples"][2] == "10 (1 distinct)"
    facts = dict(run_facts({"model": "m", **sides}))
    assert facts["Exact copies"].startswith("the 10 reported examples are 1 distinct one;")
    assert "Exact copies" not in dict(run_facts({"model": "m", "after": {"eval_loss": 1.0, "eval_examples": 10}}))


def test_no_paired_test_without_matching_per_example_values():
    before = {"eval_loss": 3.0, "per_example": _per_example([3.0, 3.0], [2, 2])}
    assert noise_tests(before, {"eval_loss": 2.0}) == {}
    assert noise_tests(before, {"eval_loss": 2.0, "per_example": _per_example([2.0], [2])}) == {}


def test_html_report_has_curves_bars_confusion_lengths_and_samples(tmp_path):
    events = [{"step": 2, "event": "train", "loss": 3.0, "lr": 0.1}, {"step": 4, "event": "train", "loss": 2.5},
              {"step": 4, "event": "eval", "eval_loss": 2.6, "accuracy": 0.5, "perplexity": 13.5, "eval_examples": 3},
              "{torn"]
    (tmp_path / "metrics.jsonl").write_text("\n".join(e if isinstance(e, str) else json.dumps(e) for e in events))
    assert read_history(tmp_path / "metrics.jsonl") == [
        {"step": 2, "loss": 3.0}, {"step": 4, "loss": 2.5}, {"step": 4, "eval_loss": 2.6, "eval_accuracy": 0.5}]
    after = classification_metrics([0, 1, 1], [0, 1, 0], ["great", "other"])
    after["per_example"] = _per_example([0.1, 0.2, 0.3], [1, 1, 1], [1.0, 1.0, 0.0])
    report = {"model": "m", "before": None, "after": after,
              "samples": [{"prompt": "q <x>", "reference": "r", "before": "b", "after": "a"}]}
    write_report(tmp_path, report)
    page = (tmp_path / "report.html").read_text()
    for alt in ("metric points", "training curves", "confusion", "length histogram: Held-out examples: scored tokens",
                "length histogram: Sample answers: words"):
        assert f'alt="{alt}"' in page
    assert "q &lt;x&gt;" in page and "http://" not in page


def test_forgetting_and_judge_sections(tmp_path):
    text = {"kind": "text", "general_loss": 2.0, "per_example": {"loss": [2.0 + 0.01 * i for i in range(30)]}}
    worse = {"kind": "text", "general_loss": 3.0, "per_example": {"loss": [3.0 + 0.01 * i for i in range(30)]}}
    report = {**_report(), "forgetting": {"source": "asset:wiki", "before": text, "after": worse},
              "judge": {"model": "grader", "mean": 4.0, "scale": 5, "prompt": "Rate {answer}", "systems": {"after": 4.0}}}
    md = write_report(tmp_path, report).read_text()
    assert "## Forgetting" in md and "lost general ability" in md and "Rate {answer}" in md
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["forgetting"]["change"]["verdict"] == "lost"
    page = (tmp_path / "report.html").read_text()
    assert "general_loss" in page and "Rate {answer}" in page and "grader" in page


def test_run_report_html_renders_in_headless_chromium(tmp_path):
    import re
    import subprocess

    from tests.unit.evaluate.test_html import _chromium, _chromium_args

    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "event": "train", "loss": 3.0}) + "\n"
                                            + json.dumps({"step": 2, "event": "train", "loss": 2.0}) + "\n")
    report = _report()
    report["before"]["per_example"] = _per_example([4.0, 4.1, 3.9, 4.0], [3, 3, 3, 3])
    report["after"]["per_example"] = _per_example([2.5, 2.4, 2.6, 2.5], [3, 3, 3, 3])
    write_report(tmp_path, report)
    args = _chromium_args(_chromium(), tmp_path / "profile")
    dom = subprocess.run(args + ["--dump-dom", (tmp_path / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the change plot, curves, and two length histograms (held-out tokens, sample words)
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", dom.stdout)) == 4
    assert "what is a bond?" in dom.stdout and "Change before -&gt; after" in dom.stdout
