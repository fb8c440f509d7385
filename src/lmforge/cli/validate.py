"""`lmforge validate CONFIG [KEY=VALUE ...]`: check a config and the first records of its data, without torch."""

from __future__ import annotations

from lmforge.cli.args import add_config_args


def register(sub) -> None:
    p = sub.add_parser("validate", help="check a run config and the first records of its data (no torch import)")
    add_config_args(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import run_validate

    print(run_validate(args.config, args.overrides))
    return 0
