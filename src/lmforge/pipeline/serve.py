"""`lmforge serve` and `lmforge monitor`: settings for the OpenAI-compatible server, drift of served traffic."""

from __future__ import annotations

from pathlib import Path

from lmforge.config.serve import load_serve_config  # noqa: F401  (re-exported for the CLI)


def run_serve(target: str, config, say=print) -> None:
    """Serve ``target`` (run folder, merged export or adapter folder) until interrupted."""
    from lmforge.serve import run_server
    from lmforge.serve.accesslog import log_terms

    config = with_run_terms(target, config, say)
    log_terms(config.log)  # a list that cannot be read stops the start before any model loads
    run_server(target, config)


def with_run_terms(target: str, config, say=print):
    """``config`` whose logged prompts are also masked with the served run's ``data.prepare.pii.terms`` (when it
    logs prompts, masks them and names no ``log.terms`` of its own): a run trained without its patients' names
    must not write them into its server's logs. Terms files are read as in training (paths from the current
    folder); one that cannot be read stops the start (``serve.log.terms``)."""
    log = config.log
    run_config = Path(target) / "config.yaml"
    if not (log.enabled and log.log_prompts and log.redact) or log.terms or not run_config.is_file():
        return config
    from lmforge.config.load import read_yaml

    prepare = (read_yaml(run_config).get("data") or {}).get("prepare") or {}
    pii = prepare.get("pii") or {}
    if not pii.get("terms"):
        return config
    say(f"prompt logs: also masking the run's data.prepare.pii.terms ({', '.join(map(str, pii['terms']))})")
    return config.model_copy(update={"log": log.model_copy(update={
        "terms": pii["terms"], "terms_match_case": bool(pii.get("terms_match_case", False))})})


def run_monitor(run_dir: str, *, window: str | None = None, baseline: str | None = None,
                last: int | None = None) -> dict:
    """Drift of ``<run>/monitor/traffic.jsonl`` (or ``window``) against the training baseline."""
    from lmforge.serve.monitor import run_monitor as monitor

    folder = Path(run_dir)
    return monitor(window or folder / "monitor" / "traffic.jsonl", baseline or folder / "monitor" / "baseline.json",
                   last=last)


def format_monitor(report: dict) -> list[str]:
    from lmforge.serve.monitor import format_report

    return format_report(report)
