"""`lmforge export RUN`: (re)write a run's adapter, merged model and model card."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a finished run: adapter, merged safetensors model, model card")
    p.add_argument("run", help="run folder (runs/NAME)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. export.dtype=bfloat16 export.dir=out/")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import run_export

    out = run_export(args.run, args.overrides)
    print(f"exported to {out}")
    return 0
