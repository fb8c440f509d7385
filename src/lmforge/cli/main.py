"""`lmforge` entry point. Each subcommand is a module in this package with ``register(subparsers)``;
its handler returns an exit code. A :class:`UserError` anywhere becomes a clear message and exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from lmforge import __version__
from lmforge.errors import StorageError, UserError, disk_full_error, is_disk_full

# Commands that run models on this process's CPUs: their OpenMP wait policy is chosen before torch loads.
COMPUTE_COMMANDS = ("train", "quickstart", "eval", "compare")
# One entry per subcommand module (lmforge.cli.<module>).
COMMANDS = ["validate", "train", "data", "quickstart", "methods", "estimate", "eval", "export", "compare", "feedback", "serve", "monitor", "ui"]


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
    from lmforge.pipeline import choose_wait_policy, silence_library_notices

    if args.command in COMPUTE_COMMANDS and "torch" not in sys.modules:
        choose_wait_policy()  # PASSIVE on a busy machine; libgomp reads it once, when torch loads
    # torchao's CUDA-kernel and torch's enum notices, bitsandbytes' `kernels` notice: none concerns the user.

    silence_library_notices()
    return run_handler(args)


def run_handler(args) -> int:
    """Run the subcommand; a problem the user can act on becomes a message and an exit status:
    2 bad input (:class:`UserError`, a folder without permission), 3 disk full (:class:`StorageError`), 1 failed export parity
    check, 130 interrupted. Anything else is a bug in lmforge and keeps its traceback.

    Output reaches a pipe or file line by line (`lmforge train run.yaml | tee train.log`, `nohup`, a CI log):
    Python buffers a non-terminal stdout in blocks, so a run's progress appeared only when it ended, and
    `lmforge serve`'s address line not at all."""
    if hasattr(sys.stdout, "reconfigure"):  # a text stream of this process (not a test's StringIO)
        sys.stdout.reconfigure(line_buffering=True)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:  # includes StorageError (exit 3)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: the run folder is resumable with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_closed():  # a socket or another pipe: not the reader of our output going away
            raise
        # `lmforge data preview run.yaml | head`: the reader has what it wanted. Exit as a program killed by
        # SIGPIPE would (128 + 13), quietly; stdout goes to /dev/null so the interpreter's final flush is silent.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except PermissionError as exc:  # a folder the user may not write (or read)
        print(f"error: {exc.filename or exc}: permission denied\n  hint: choose a folder you can write, "
              "or fix its permissions", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # a path lmforge expected vanished (deleted while running)
        if os.environ.get("LMFORGE_DEBUG"):
            raise
        print(f"error: {exc.filename or exc}: file not found", file=sys.stderr)
        return 2
    except Exception as exc:
        if is_disk_full(exc):  # a write outside lmforge.atomic (a log line, a library's cache)
            print(f"error: {disk_full_error(exc, getattr(exc, 'filename', None))}", file=sys.stderr)
            return StorageError.exit_code
        if type(exc).__name__ != "ParityError":  # a failed export parity check has its own exit code
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code  # type: ignore[attr-defined]

def _stdout_closed() -> bool:
    """True when stdout is a pipe whose reader has gone (poll reports an error on its write end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll (Windows), no real file descriptor
        return False


if __name__ == "__main__":
    sys.exit(main())
