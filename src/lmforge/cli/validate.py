"""`lmforge validate CONFIG [KEY=VALUE ...]`: check a config and the first records of its data, without torch."""

from __future__ import annotations

from lmforge.cli.args import add_config_args


def register(sub) -> None:
    p = sub.add_parser("validate", help="check a run config and the first records of its data (no torch import)")
    add_config_args(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.errors import UserError
    from lmforge.validate import problems_message, validate_config

    result = validate_config(args.config, args.overrides)
    for note in result.notes:
        print(f"note: {note}")
    if result.errors:
        raise UserError(problems_message(result), where=args.config)
    config, plan = result.config, result.plan
    print(
        f"{args.config}: ok  (model {config.model.name}, data {config.data.format}"
        f"{f' x {len(config.data.tasks)} tasks, mixing {config.data.mixing}' if config.data.tasks else ''}, "
        f"method {plan.method.name}, objective {plan.objective.name})"
    )
    return 0
