"""`lmforge validate CONFIG [KEY=VALUE ...]`: check a config without importing torch."""

from __future__ import annotations

from lmforge.cli.args import add_config_args


def register(sub) -> None:
    p = sub.add_parser("validate", help="check a run config (no torch import; instant)")
    add_config_args(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.config import load_config
    from lmforge.pipeline import run_validate

    print(run_validate(load_config(args.config, args.overrides), source=args.config))
    return 0
