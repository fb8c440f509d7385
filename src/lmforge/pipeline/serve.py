"""`lmforge serve` and `lmforge monitor`: settings for the OpenAI-compatible server, drift of served traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def load_serve_config(path: str | None, overrides: Sequence[str]):
    """Server settings from an optional YAML file plus KEY=VALUE overrides, validated strictly."""
    import yaml
    from pydantic import ValidationError

    from lmforge.config.load import apply_overrides, format_validation_error
    from lmforge.config.serve import ServeConfig
    from lmforge.errors import UserError

    raw: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise UserError("server config not found", where=str(p))
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    try:
        return ServeConfig.model_validate(apply_overrides(raw, list(overrides)))
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, ServeConfig), where=path or "command line") from None


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
