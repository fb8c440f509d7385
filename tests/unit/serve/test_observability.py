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
