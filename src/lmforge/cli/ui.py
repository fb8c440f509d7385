"""`lmforge ui [RUNS_DIR]`: a local web dashboard over a runs folder (127.0.0.1:7860 by default)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("ui", help="web dashboard: runs, live progress, reports, compare, feedback, data, playground")
    p.add_argument("runs_dir", nargs="?", default="runs", help="folder holding the run folders (default runs)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; others need an API key)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--api-key-env", default=None, help="environment variable holding comma-separated API keys")
    p.add_argument("--feedback-dir", default=None, help="where feedback is written (default RUNS_DIR/feedback)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import run_ui

    run_ui(args.runs_dir, host=args.host, port=args.port, api_key_env=args.api_key_env, feedback_dir=args.feedback_dir)
    return 0
