"""`lmforge serve` and `lmforge monitor`: settings for the OpenAI-compatible server, drift of served traffic."""

from __future__ import annotations

from pathlib import Path

from lmforge.config.serve import load_serve_config  # noqa: F401  (re-exported for the CLI)


def run_serve(target: str, config) -> None:
    """Serve ``target`` (run folder, merged export or adapter folder) until interrupted."""
    from lmforge.serve import run_server

    run_server(target, config)


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
