"""`lmforge data preview CONFIG` and `lmforge data prepare CONFIG`."""

from __future__ import annotations

import sys

from lmforge.cli.args import add_config_args


def register(sub) -> None:
    p = sub.add_parser("data", help="inspect and prepare training data")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    prev = dsub.add_parser("preview", help="show rendered examples with the trained tokens marked")
    add_config_args(prev)
    prev.add_argument("-n", type=int, default=3, help="number of examples (default 3)")
    prev.set_defaults(handler=preview)
    prep = dsub.add_parser("prepare", help="clean, deduplicate, redact, label-check and split the data")
    add_config_args(prep)
    prep.add_argument("--out", default=None, help="output folder (default <run dir>/data)")
    prep.set_defaults(handler=prepare)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def preview(args) -> int:
    from lmforge.pipeline import load_run_config, run_preview

    config = load_run_config(args.config, args.overrides)
    print(run_preview(config, source=args.config, n=args.n, color=sys.stdout.isatty()))
    return 0


def prepare(args) -> int:
    from lmforge.pipeline import load_run_config, run_prepare

    config = load_run_config(args.config, args.overrides)
    run_prepare(config, source=args.config, out_dir=args.out)
    return 0
