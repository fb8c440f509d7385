"""``run_ui``: what ``lmforge ui`` calls."""

from __future__ import annotations

from lmforge.serve.access import check_bind
from lmforge.ui.app import UISettings, create_app


def run_ui(settings: UISettings, say=print) -> None:
    """Serve the dashboard on settings.host:port until interrupted. UserError for a missing runs
    folder, or a non-loopback host without an API key (the rule of ``lmforge serve``)."""
    import uvicorn

    check_bind(settings.host, settings.keys)
    app = create_app(settings)
    say(f"lmforge ui: {app.state.ui.runs_dir} on http://{settings.host}:{settings.port}/ (Ctrl-C to stop)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=2)
