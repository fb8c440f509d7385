"""``run_server``: what ``lmforge serve RUN_OR_EXPORT`` calls."""

from __future__ import annotations

from pathlib import Path

from lmforge.serve.store import ModelStore, resolve_target


def default_window_file(target: Path) -> Path | None:
    """<run>/monitor/traffic.jsonl for a run folder (one with export/); None otherwise."""
    target = Path(target)
    return target / "monitor" / "traffic.jsonl" if (target / "export").is_dir() else None


def run_server(target: Path | str, serve_cfg) -> None:
    """Load ``target`` and serve it with uvicorn on serve_cfg.host:port until interrupted.

    target: a run folder (serves export/merged/, else export/adapter/ over the base named in its
    adapter_config.json), an HF model folder, or a PEFT adapter folder. Bad targets raise UserError, and so
    does a non-loopback host without an API key (:func:`lmforge.serve.access.check_bind`).
    """
    import uvicorn

    from lmforge.serve.access import check_bind
    from lmforge.serve.app import create_app

    check_bind(serve_cfg.host, serve_cfg.resolved_api_keys())
    store = ModelStore(resolve_target(target, serve_cfg), serve_cfg.dtype)
    app = create_app(store, serve_cfg, window_file=default_window_file(Path(target)))
    uvicorn.run(app, host=serve_cfg.host, port=serve_cfg.port, log_level="warning", access_log=False)
