"""`lmforge estimate CONFIG [--budget GB]`: predicted peak memory and time per step before launch."""

from __future__ import annotations

from lmforge.cli.args import add_config_args


def register(sub) -> None:
    p = sub.add_parser("estimate", help="predict peak memory and time per step; suggest changes that fit a budget")
    add_config_args(p)
    p.add_argument("--budget", type=float, default=None, metavar="GB", help="memory budget in GiB")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import load_run_config, run_estimate

    config = load_run_config(args.config, args.overrides)
    run_estimate(config, source=args.config, budget_gb=args.budget)
    return 0
