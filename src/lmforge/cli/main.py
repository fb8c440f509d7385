"""`lmforge` entry point. Each subcommand is a module in this package with ``register(subparsers)``;
its handler returns an exit code. A :class:`UserError` anywhere becomes a clear message and exit 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from lmforge import __version__
from lmforge.errors import UserError

# Commands that run models on this process's CPUs: their OpenMP wait policy is chosen before torch loads.
COMPUTE_COMMANDS = ("train", "quickstart", "eval", "compare")
# One entry per subcommand module (lmforge.cli.<module>).
COMMANDS = ["validate", "train", "data", "quickstart", "methods", "estimate", "eval", "export", "compare", "feedback", "serve", "monitor"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmforge", description="Fine-tune pretrained language models on your own data, from one YAML file."
    )
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"lmforge.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also come after options (`eval RUN --data f train.x=1`).
    late = [a for a in extra if "=" in a and not a.startswith("-")]
    if extra != late or (late and not hasattr(args, "overrides")):
        parser.parse_args(argv)  # reports the unrecognised arguments and exits 2
    if late:
        args.overrides = list(args.overrides) + late
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    # peft asks models for a property transformers 5 deprecated; the warning is not the user's to act on.
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)
    # peft imports torchao (qlora's int8/int4 backend) when installed; on a CPU build torchao logs that its
    # CUDA kernels did not load, and torch logs enum-registration notices. Neither concerns the user.
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.command in COMPUTE_COMMANDS and "torch" not in sys.modules:
        from lmforge.train.threads import choose_wait_policy

        choose_wait_policy()  # PASSIVE on a busy machine; libgomp reads it once, when torch loads
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a failed export parity check is an error with its own exit code
        if type(exc).__name__ != "ParityError":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        print("interrupted: the run folder is resumable with --resume", file=sys.stderr)
        return 130
    except FileNotFoundError as exc:
        if os.environ.get("LMFORGE_DEBUG"):
            raise
        print(f"error: {exc.filename}: file not found", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
