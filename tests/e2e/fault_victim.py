"""Runs ``lmforge ARGS`` and SIGKILLs itself at a chosen point, or under a file-size limit (a full disk).

    python tests/e2e/fault_victim.py SPEC_JSON lmforge-args...

SPEC: ``{"kill": WHERE, "at": N}`` kills this process with SIGKILL (no cleanup of any kind runs)
the N-th time WHERE is reached:

- ``step``: after an optimizer step, before its checkpoint is written;
- ``checkpoint-write``: inside a ``checkpoints/last`` write (model.safetensors written into the
  temporary folder, the optimizer state not yet);
- ``checkpoint-swap``: between the two renames that replace ``checkpoints/last``;
- ``export``: inside an export, after the merged model was written into the staging folder;
- ``prepare-stage``: after ``data prepare`` assembled its output folder, before publishing it;
- ``prepare-swap``: between the two renames that replace the prepared folder.

``{"fsize": BYTES}``: no file may grow past BYTES (RLIMIT_FSIZE; SIGXFSZ ignored so a write
raises OSError EFBIG, as a full disk raises ENOSPC). Fault injection wraps lmforge functions
from the outside, in this test process only.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from pathlib import Path


def main() -> int:
    spec = json.loads(sys.argv[1])
    if "fsize" in spec:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (spec["fsize"], spec["fsize"]))
    if "kill" in spec:
        _arm(spec["kill"], int(spec["at"]))
    from lmforge.cli.main import main as lmforge

    return lmforge(sys.argv[2:])


def _arm(where: str, at: int) -> None:
    seen = {"n": 0}

    def reached() -> None:
        seen["n"] += 1
        if seen["n"] == at:
            os.kill(os.getpid(), signal.SIGKILL)

    def after(module, name: str) -> None:
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            out = real(*args, **kwargs)
            reached()
            return out

        setattr(module, name, wrapped)

    if where == "step":
        import lmforge.train.loop as loop

        after(loop, "_optimizer_step")
    elif where == "checkpoint-write":
        import lmforge.train.checkpoint as checkpoint

        real = checkpoint._save_optimizer
        checkpoint._save_optimizer = lambda *a, **k: (reached(), real(*a, **k))[1]
    elif where in ("checkpoint-swap", "prepare-swap"):
        import lmforge.atomic as atomic

        aside = ".last.old" if where == "checkpoint-swap" else None
        atomic.os = _KillingOs(lambda dst: (aside and Path(dst).name == aside)
                               or (not aside and Path(dst).name.endswith(".old") and ".last" not in Path(dst).name
                                   and ".best" not in Path(dst).name), reached)
    elif where == "export":
        import lmforge.export as export

        after(export, "export_merged")
    elif where == "prepare-stage":
        import lmforge.data.prepare.run as prepare

        after(prepare, "_stage")
    else:
        raise SystemExit(f"unknown kill point {where}")


class _KillingOs:
    """``os`` for lmforge.atomic: ``replace`` onto a matching destination is done, then ``reached()``."""

    def __init__(self, matches, reached):
        self._matches, self._reached = matches, reached

    def __getattr__(self, name):
        return getattr(os, name)

    def replace(self, src, dst):
        os.replace(src, dst)
        if self._matches(dst):
            self._reached()


if __name__ == "__main__":
    sys.exit(main())
