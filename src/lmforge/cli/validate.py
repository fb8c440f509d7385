"""`lmforge validate CONFIG [KEY=VALUE ...]`: check a config without importing torch."""

from __future__ import annotations

from lmforge.cli.args import add_config_args


def register(sub) -> None:
    p = sub.add_parser("validate", help="check a run config (no torch import; instant)")
    add_config_args(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.config import load_config
    from lmforge.plan import plan_run

    config = load_config(args.config, args.overrides)
    plan = plan_run(config, source=args.config)
    print(
        f"{args.config}: ok  (model {config.model.name}, data {config.data.format}"
        f"{f' x {len(config.data.tasks)} tasks, mixing {config.data.mixing}' if config.data.tasks else ''}, "
        f"method {plan.method.name}, objective {plan.objective.name})"
    )
    return 0
