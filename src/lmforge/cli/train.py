"""`lmforge train CONFIG [KEY=VALUE ...] [--resume]`."""

from __future__ import annotations

from lmforge.cli.args import add_config_args


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune: evaluate the base, train, evaluate again, export")
    add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train with N processes on this machine (torchrun; DDP or FSDP per runtime.distributed)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import load_run_config, launch_processes, run_train

    if args.nproc > 1:
        return launch_processes(["train", args.config, *args.overrides, *(["--resume"] if args.resume else [])],
                                args.nproc)

    config = load_run_config(args.config, args.overrides)
    run_train(config, source=args.config, resume=args.resume)
    return 0
