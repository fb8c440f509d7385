"""`lmforge eval RUN_OR_CONFIG`: evaluate a finished run (or a config's base model) on its held-out data."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run's exported model (or a config's base model) on held-out data")
    p.add_argument("target", help="a run folder (runs/NAME) or a run config YAML")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. data.eval=path/to/test.jsonl")
    p.add_argument("--base", action="store_true", help="evaluate the base model, without the trained weights")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import run_eval

    metrics = run_eval(args.target, args.overrides, base=args.base)
    width = max(len(k) for k in metrics) if metrics else 0
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            print(f"{key:<{width}}  {value:.4f}")
    return 0
