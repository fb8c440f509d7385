"""`lmforge ui`: the local dashboard over a runs folder (:mod:`lmforge.ui`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def run_ui(runs_dir: str, *, host: str = "127.0.0.1", port: int = 7860, api_key_env: str | None = None,
           feedback_dir: str | None = None, say: Callable[[str], None] = print) -> None:
    """Serve the dashboard until interrupted. API keys come from ``api_key_env`` as for `lmforge serve`;
    UserError for a missing runs folder or a non-loopback host without a key."""
    from lmforge.config.serve import ServeConfig
    from lmforge.ui import UISettings
    from lmforge.ui.server import run_ui as serve

    keys = ServeConfig(api_key_env=api_key_env).resolved_api_keys()
    serve(UISettings(runs_dir=Path(runs_dir), feedback_dir=Path(feedback_dir) if feedback_dir else None,
                     host=host, port=port, keys=keys), say=say)
