"""``lmforge ui``: a local web dashboard over a runs folder (the last stage: it may import every
other stage, none imports it). It reads run folders and never owns training state: the YAML stays
the source of truth. Imports are lazy so ``import lmforge.ui`` stays cheap."""

from __future__ import annotations

__all__ = ["UISettings", "create_app", "run_ui"]


def __getattr__(name: str):
    if name in ("UISettings", "create_app"):
        from lmforge.ui import app

        return getattr(app, name)
    if name == "run_ui":
        from lmforge.ui.server import run_ui

        return run_ui
    raise AttributeError(name)
