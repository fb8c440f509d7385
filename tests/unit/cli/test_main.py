"""Each handler of the CLI entry point: what the user sees and the exit status."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from lmforge.cli.main import run_handler
from lmforge.errors import StorageError, UserError


class ParityError(Exception):  # matched by name, like lmforge.export.parity.ParityError
    exit_code = 1


class SafetensorLike(Exception):
    pass


def _raise(exc):
    def handler(_args):
        raise exc
    return SimpleNamespace(handler=handler)


@pytest.mark.parametrize("exc, code, shown", [
    (UserError("bad value", where="train.lr", hint="use a number"), 2, "error: train.lr: bad value\n  hint: use a number"),
    (StorageError("no space left on the disk", where="runs/x/checkpoints/last"), 3, "runs/x/checkpoints/last"),
    (ParityError("merged parity check failed"), 1, "merged parity check failed"),
    (KeyboardInterrupt(), 130, "resumable with --resume"),
    (FileNotFoundError(errno.ENOENT, "No such file", "runs/x/gone.json"), 2, "runs/x/gone.json: file not found"),
    (PermissionError(errno.EACCES, "Permission denied", "/srv/runs"), 2, "/srv/runs: permission denied"),
    (OSError(errno.ENOSPC, "No space left on device"), 3, "no space left on the disk"),
    (OSError(errno.EFBIG, "File too large"), 3, "refused to write more"),
    (SafetensorLike("Error while serializing: I/O error: No space left on device (os error 28)"), 3, "no space left"),
])
def test_each_handler(exc, code, shown, capsys):
    assert run_handler(_raise(exc)) == code
    err = capsys.readouterr().err
    assert shown in err and "Traceback" not in err


def test_a_success_returns_the_handlers_status():
    assert run_handler(SimpleNamespace(handler=lambda _a: None)) == 0
    assert run_handler(SimpleNamespace(handler=lambda _a: 1)) == 1


@pytest.mark.parametrize("exc", [RuntimeError("a bug"), OSError(errno.EIO, "Input/output error"), ValueError("x")])
def test_anything_else_is_a_bug_and_keeps_its_traceback(exc):
    with pytest.raises(type(exc)):
        run_handler(_raise(exc))


def test_debug_keeps_the_file_not_found_traceback(monkeypatch):
    monkeypatch.setenv("LMFORGE_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_handler(_raise(FileNotFoundError(errno.ENOENT, "x", "y")))


def test_output_reaches_a_pipe_line_by_line():
    """`lmforge train run.yaml | tee log`: each line arrives when it is said, not when the process ends
    (`lmforge serve`'s address line never arrived: the server does not end)."""
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from types import SimpleNamespace\n"
        "from lmforge.cli.main import run_handler\n"
        "def handler(_a):\n"
        "    print('serving on http://127.0.0.1:8000/v1')\n"
        "    time.sleep(60)\n"
        "sys.exit(run_handler(SimpleNamespace(handler=handler)))\n"
    )
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as on a user's machine
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        import select

        ready, _, _ = select.select([proc.stdout], [], [], 30)  # the line is there long before the sleep ends
        assert ready and proc.stdout.readline() == b"serving on http://127.0.0.1:8000/v1\n"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_output_piped_into_a_reader_that_stops_early_ends_quietly():
    """`lmforge data preview run.yaml | head`: the reader closes the pipe; exit 141 (as SIGPIPE), no traceback.
    A broken pipe that is not stdout (a socket, a subprocess) stays a bug with its traceback."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from types import SimpleNamespace\n"
        "from lmforge.cli.main import run_handler\n"
        "def handler(_a):\n"
        "    for i in range(100000):\n"
        "        print('line', i)\n"
        "sys.exit(run_handler(SimpleNamespace(handler=handler)))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""
    proc.stderr.close()
    with pytest.raises(BrokenPipeError):  # stdout is fine here: someone else's pipe broke
        run_handler(_raise(BrokenPipeError(32, "Broken pipe")))
