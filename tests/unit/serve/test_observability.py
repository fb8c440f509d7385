"""/health, Prometheus /metrics, JSON request logs with redaction."""

from __future__ import annotations

import json
import logging

from lmforge.serve.accesslog import AccessLog, regex_redact
from tests.unit.serve.conftest import http


def test_health_reports_model_and_queue(server):
    status, body = http("GET", server.url + "/health", key=None)
    assert status == 200 and body["status"] == "ok" and body["kind"] == "causal"
    assert body["model"] == "tiny" and "alpha" in body["adapters"] and body["queue_depth"] == 0


def test_metrics_count_requests_latency_tokens_and_queue(server):
    http("POST", server.url + "/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 3})
    status, text = http("GET", server.url + "/metrics", key=None)
    assert status == 200
    for name in ("lmforge_requests_total{endpoint=\"/v1/completions\",status=\"200\"}",
                 "lmforge_request_latency_seconds_bucket", "lmforge_generated_tokens_total",
                 "lmforge_generation_tokens_per_second_bucket", "lmforge_queue_depth", "lmforge_errors_total",
                 "lmforge_batch_size_bucket"):
        assert name in text, name
    generated = [line for line in text.splitlines() if line.startswith("lmforge_generated_tokens_total")]
    assert float(generated[0].split()[-1]) >= 1


def test_regex_redactor_masks_emails_and_phones():
    out = regex_redact("mail jane.doe@example.com or call +1 415-555-0199 about order 12")
    assert "jane.doe" not in out and "555" not in out and "[EMAIL]" in out and "[PHONE]" in out
    assert "order 12" in out


def test_access_log_lines_are_json_and_redacted(tmp_path):
    logging.getLogger("lmforge.serve.access").handlers.clear()
    path = tmp_path / "access.jsonl"
    log = AccessLog(enabled=True, file=str(path), log_prompts=True, redact=True)
    log.write(request_id="r1", status=200, output=log.text("write to bob@corp.io"))
    for h in logging.getLogger("lmforge.serve.access").handlers:
        h.flush()
    rec = json.loads(path.read_text().splitlines()[-1])
    assert rec["status"] == 200 and "bob@corp.io" not in rec["output"] and "ts" in rec
    assert "EMAIL" in rec["output"]  # <EMAIL> from the data-stage detectors, [EMAIL] from the fallback
    logging.getLogger("lmforge.serve.access").handlers.clear()
    assert AccessLog(enabled=False, log_prompts=False).text("secret") is None


def test_logged_prompts_are_masked_with_the_runs_own_lists_too(tmp_path, monkeypatch):
    """A run trained on clinic notes with data.prepare.pii.terms must not write its patients' names into the
    server's prompt logs: the served run's lists are masked like the built-in detectors' finds."""
    import pytest
    import yaml

    from lmforge.config.serve import ServeConfig
    from lmforge.errors import UserError
    from lmforge.pipeline.serve import with_run_terms
    from lmforge.serve.accesslog import log_terms

    monkeypatch.chdir(tmp_path)
    (tmp_path / "patients.txt").write_text("John Smith\nAnn Lee\n")
    run = tmp_path / "runs" / "clinic"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"data": {"prepare": {"pii": {"terms": {"PATIENT": "patients.txt", "CLINIC": ["Oak Ward"]}}}}}))
    said = []
    logging_on = ServeConfig.model_validate({"log": {"log_prompts": True}})
    cfg = with_run_terms(str(run), logging_on, said.append)
    assert cfg.log.terms == {"PATIENT": "patients.txt", "CLINIC": ["Oak Ward"]} and "CLINIC, PATIENT" in said[0]
    log = AccessLog(enabled=False, log_prompts=True, redact=True, terms=log_terms(cfg.log))
    assert log.text("john smith (ann.lee@mail.com) is in Oak Ward; Annual review") == \
        "<PATIENT> (<EMAIL>) is in <CLINIC>; Annual review"
    # nothing logged, nothing read; the server's own lists win over the run's
    assert with_run_terms(str(run), ServeConfig(), said.append).log.terms == {}
    own = ServeConfig.model_validate({"log": {"log_prompts": True, "terms": {"NAME": ["Bob"]}}})
    assert with_run_terms(str(run), own, said.append).log.terms == {"NAME": ["Bob"]}
    # a list that cannot be read stops the start rather than letting the names into the logs
    (tmp_path / "patients.txt").unlink()
    with pytest.raises(UserError, match=r"serve.log.terms.PATIENT: no file 'patients.txt'"):
        log_terms(cfg.log)
