"""LLM-as-judge against a stub OpenAI-compatible HTTP server on a free loopback port (no network)."""

from __future__ import annotations

import pytest

from lmforge.errors import UserError
from lmforge.evaluate.judge import DEFAULT_PROMPT, Judge, judge_outputs, parse_score, render_prompt
from tests.fixtures.judge_stub import JudgeStub as _Stub


@pytest.fixture
def stub():
    server = _Stub()
    yield server
    server.close()


SAMPLES = [
    {"prompt": "capital of france?", "reference": "paris", "before": "london", "after": "it is paris"},
    {"prompt": "what is a bond?", "reference": "a loan", "before": "a loan", "after": "a loan to a company"},
]


def test_judge_grades_each_system_and_keeps_the_prompt(stub, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-judge")
    judge = Judge(base_url=stub.url, model="grader", api_key_env="JUDGE_KEY")
    result = judge_outputs(judge, SAMPLES, ["before", "after"])
    assert result["per_example"] == {"before": [2.0, 5.0], "after": [5.0, 5.0]}
    assert result["systems"] == {"before": 3.5, "after": 5.0}
    assert result["mean"] == pytest.approx(17 / 4) and result["unparsed"] == 0
    assert result["prompt"] == DEFAULT_PROMPT and result["model"] == "grader"
    assert len(stub.requests) == 4  # sent concurrently: arrival order is not the sample order
    for request in stub.requests:
        assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-judge"
        assert request["body"]["model"] == "grader" and request["body"]["temperature"] == 0
    sent = {r["body"]["messages"][0]["content"] for r in stub.requests}
    assert render_prompt(judge, "capital of france?", "paris", "london") in sent


def test_concurrent_replies_map_back_to_their_samples(stub):
    samples = [{"prompt": f"q{i}", "reference": f"ref{i}", "after": f"ref{i}" if i % 3 else "wrong"} for i in range(20)]
    result = judge_outputs(Judge(base_url=stub.url, model="m", concurrency=8), samples, ["after"])
    assert result["per_example"]["after"] == [2.0 if i % 3 == 0 else 5.0 for i in range(20)]
    one_by_one = judge_outputs(Judge(base_url=stub.url, model="m", concurrency=1), samples, ["after"])
    assert one_by_one["per_example"] == result["per_example"] and one_by_one["replies"] == result["replies"]


def test_no_key_sends_no_authorization(stub, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge_outputs(Judge(base_url=stub.url, model="m"), SAMPLES[:1], ["after"])
    assert stub.requests[0]["auth"] is None


def test_unparseable_replies_are_counted_not_scored():
    server = _Stub(reply="I cannot decide.")
    try:
        result = judge_outputs(Judge(base_url=server.url, model="m"), SAMPLES, ["after"])
    finally:
        server.close()
    assert result["systems"] == {"after": None} and result["unparsed"] == 2


def test_http_errors_and_unreachable_endpoints_are_user_errors():
    server = _Stub(status=401)
    try:
        with pytest.raises(UserError, match="HTTP 401"):
            judge_outputs(Judge(base_url=server.url, model="m"), SAMPLES, ["after"])
        port = server.server.server_address[1]
    finally:
        server.close()
    with pytest.raises(UserError, match="cannot reach"):
        judge_outputs(Judge(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=5), SAMPLES, ["after"])


@pytest.mark.parametrize("text, score", [("Score: 4", 4.0), ("score = 3.5 because", 3.5), ("I'd say 2", 2.0),
                                         ("Score: 9", None), ("no idea", None)])
def test_parse_score(text, score):
    assert parse_score(text, 5) == score


def test_judge_talks_to_lmforge_own_server(tiny_llama_dir, tmp_path, monkeypatch):
    from pathlib import Path

    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app
    from tests.unit.serve.conftest import KEY, LiveServer

    cfg = ServeConfig(api_keys=[KEY], model_name="tiny", log={"enabled": False},
                      limits={"max_prompt_tokens": 1024, "max_tokens": 32})
    live = LiveServer(create_app(Path(tiny_llama_dir), cfg, window_file=tmp_path / "traffic.jsonl"))
    try:
        monkeypatch.setenv("JUDGE_KEY", KEY)
        judge = Judge(base_url=f"{live.url}/v1", model="tiny", api_key_env="JUDGE_KEY", max_tokens=8)
        result = judge_outputs(judge, SAMPLES, ["after"])
        assert len(result["replies"]["after"]) == 2 and all(isinstance(r, str) for r in result["replies"]["after"])
        graded = [s for s in result["per_example"]["after"] if s is not None]
        assert result["unparsed"] + len(graded) == 2 and all(1 <= s <= 5 for s in graded)
        monkeypatch.setenv("JUDGE_KEY", "wrong")
        with pytest.raises(UserError, match="HTTP 401"):
            judge_outputs(judge, SAMPLES[:1], ["after"])
    finally:
        live.stop()


def test_compare_reports_get_a_judge_column(stub):
    from lmforge.pipeline.compare import add_judge

    records = [{"instruction": "capital of france?", "input": "", "output": "paris", "system": None},
               {"instruction": "what is a bond?", "input": "", "output": "a loan", "system": None}]
    report = {"table": [{"system": "base zero-shot"}, {"system": "fine-tuned"}], "notes": [],
              "per_example": {"base zero-shot": {"outputs": ["london", "stock"]},
                              "fine-tuned": {"outputs": ["paris", "a loan"]}}}
    add_judge(report, Judge(base_url=stub.url, model="grader"), records)
    assert report["judge"]["systems"] == {"base zero-shot": 2.0, "fine-tuned": 5.0}
    assert [row["judge score (1-5)"] for row in report["table"]] == [2.0, 5.0]
    assert any("capital of france?" in r["body"]["messages"][0]["content"] for r in stub.requests)  # sent concurrently
    assert any("grader prompt" in note for note in report["notes"])
