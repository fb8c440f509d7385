"""`lmforge serve RUN_OR_EXPORT`: an OpenAI-compatible server (127.0.0.1 by default)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a run / exported model behind an OpenAI-compatible API")
    p.add_argument("target", help="run folder, exported HF model folder, or PEFT adapter folder")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="server settings, e.g. port=8080 limits.max_tokens=256")
    p.add_argument("--config", default=None, help="YAML file with server settings (see docs/serving.md)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--api-key-env", default=None, help="environment variable holding comma-separated API keys")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import load_serve_config, run_serve

    extra = [f"{k}={v}" for k, v in (("host", args.host), ("port", args.port), ("api_key_env", args.api_key_env)) if v]
    cfg = load_serve_config(args.config, list(args.overrides) + extra)
    run_serve(args.target, cfg)
    return 0
