"""Serving: OpenAI-compatible HTTP server, batched generation, metrics, drift monitoring.

Imports are lazy so ``import lmforge.serve`` stays cheap (no torch/fastapi until used).
"""

from __future__ import annotations

__all__ = ["create_app", "run_server", "compute_baseline", "compare_to_baseline", "run_monitor"]


def __getattr__(name: str):
    if name == "create_app":
        from lmforge.serve.app import create_app

        return create_app
    if name == "run_server":
        from lmforge.serve.server import run_server

        return run_server
    if name == "compute_baseline":
        from lmforge.serve.drift import compute_baseline

        return compute_baseline
    if name in ("compare_to_baseline", "run_monitor"):
        from lmforge.serve import monitor

        return getattr(monitor, name)
    raise AttributeError(name)
