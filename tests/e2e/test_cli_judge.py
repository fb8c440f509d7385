"""LLM-as-judge from the run config (train) and from `lmforge eval --judge-url`, against a stub judge."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import WIDE_TEST, lora_config, run_cli
from tests.fixtures.judge_stub import JudgeStub


@pytest.fixture
def judge():
    server = JudgeStub()
    yield server
    server.close()


def test_train_and_eval_are_graded_by_the_configured_judge(tmp_path, tiny_llama_dir, qa_file, judge):
    config = lora_config(tmp_path, tiny_llama_dir, qa_file, split=WIDE_TEST,  # 3 distinct test questions
                         evaluate=f"{{generations: 1, max_new_tokens: 4, judge: {{url: '{judge.url}', model: grader, examples: 3}}}}")
    done = run_cli("train", str(config))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    graded = results["judge"]
    assert set(graded["per_example"]) == {"before", "after"}
    assert len(graded["per_example"]["before"]) == 3 and len(graded["per_example"]["after"]) == 3
    assert all(score in (2.0, 5.0) for score in graded["per_example"]["after"])
    assert len(results["samples"]) == 1  # the report shows eval.generations samples; the judge saw 3
    assert "LLM judge" in (tmp_path / "run" / "report.md").read_text()
    train_requests = len(judge.requests)
    assert train_requests == 6 and all(r["body"]["model"] == "grader" for r in judge.requests)

    done = run_cli("eval", str(tmp_path / "run"), "--judge-url", judge.url, "--judge-model", "grader2")
    assert done.returncode == 0, done.stderr[-2000:]
    evaluated = json.loads((tmp_path / "run" / "eval" / "results.json").read_text())
    assert evaluated["judge"]["model"] == "grader2" and list(evaluated["judge"]["per_example"]) == ["after"]
    assert "Score:" in evaluated["judge"]["replies"]["after"][0]
    assert judge.requests[-1]["body"]["model"] == "grader2"


def test_eval_judge_needs_url_and_model(tmp_path, tiny_llama_dir, qa_file):
    config = lora_config(tmp_path, tiny_llama_dir, qa_file)
    done = run_cli("eval", str(config), "--judge-url", "http://127.0.0.1:9/v1")
    assert done.returncode == 2 and "--judge-model" in done.stderr and "Traceback" not in done.stderr
