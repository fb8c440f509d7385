"""`lmforge methods [--model NAME]`: every method, what it trains, its capabilities and guidance."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("methods", help="list fine-tuning methods and what each trains")
    p.add_argument("--model", default=None, help="count trainable parameters for this model (built-in name or folder)")
    p.add_argument("--labels", type=int, default=None, help="with --model: count for a classifier with this many labels")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import describe_methods

    print(describe_methods(args.model, args.labels))
    return 0
