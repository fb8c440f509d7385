"""`lmforge train CONFIG --nproc N`: re-run the same command as N processes under torchrun.

torchrun (``python -m torch.distributed.run``) starts the N processes, sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` and restarts nothing
(``--max-restarts 0``). Each process runs the command without ``--nproc``, and
:func:`lmforge.train.runtime.build_runtime` joins the process group from that environment.
Multi-node and ``accelerate launch`` commands: docs/distributed.md.
"""

from __future__ import annotations

import os
import subprocess
import sys

from lmforge.train.distributed import is_main_process, process_info

__all__ = ["is_main_process", "launch", "launched", "strip_nproc", "torchrun_command"]


def launched() -> bool:
    """True inside a process started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return process_info().world_size > 1


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (so the children do not launch again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def torchrun_command(argv: list[str], nproc: int, python: str | None = None) -> list[str]:
    """The torchrun command line running ``lmforge <argv>`` as ``nproc`` processes on this machine.

    ``argv``: the lmforge arguments after the program name, e.g.
    ``["train", "run.yaml", "--nproc", "2", "train.lr=1e-4"]`` (``--nproc`` is removed).
    """
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(nproc), "--max-restarts", "0", "-m", "lmforge.cli.main", *strip_nproc(argv)]


def launch(argv: list[str], nproc: int) -> int:
    """Run ``lmforge <argv>`` as ``nproc`` processes and wait; return torchrun's exit code.

    Each child gets ``OMP_NUM_THREADS`` = cores // nproc (at least 1) unless already set, so N
    processes do not oversubscribe the CPU (see ../shared/PITFALLS.md "Threads").
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(torchrun_command(argv, nproc), env=env)
