"""``<run>/status.json``: what a run is doing now (phase, step k/N, ETA) and a heartbeat. Torch-free.

The training pipeline writes it (main process only) through :func:`tracking` and :func:`set_phase`;
the training loop's progress callback reports steps through :func:`set_progress`. Readers
(``lmforge ui``) call :func:`read_status` and :func:`run_state`, which derives one of
``running`` / ``finished`` / ``failed`` / ``resumable`` from the folder, the heartbeat's age and
whether the writing process is still alive -- never from a guess.

File fields: ``phase`` (one of :data:`PHASES`), ``step``, ``total_steps``, ``eta_s`` (seconds,
or null), ``pid``, ``host``, ``started`` / ``updated`` (UNIX seconds; ``updated`` is the
heartbeat, rewritten every :data:`HEARTBEAT_S` seconds while the process lives), ``error``
(the message of a failed run), ``finished`` (UNIX seconds of the end), ``work`` (the progress of the
phase's current piece of work outside the training steps, e.g. ``{"what": "evaluation", "done": 8,
"total": 32, "unit": "examples", "eta_s": 41.0}``, or null; reported through :func:`set_work` by
:mod:`lmforge.progress`). Every write is atomic.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from lmforge.atomic import atomic_write_text

STATUS_FILE = "status.json"
# Phases in the order a run goes through them, then the terminal ones.
PHASES = ("load", "before-eval", "train", "after-eval", "export", "parity", "done", "failed", "interrupted")
TERMINAL = ("done", "failed", "interrupted")
HEARTBEAT_S = 5.0  # the writer refreshes ``updated`` this often
STALE_S = 120.0  # a heartbeat older than this means the writer is gone (24 missed beats)
_PROGRESS_EVERY_S = 0.5  # step progress is written at most this often (phase changes always)


class StatusWriter:
    """Writes ``<run_dir>/status.json``; nothing is written before the first :meth:`phase` call."""

    def __init__(self, run_dir: str | Path, *, clock=time.time, heartbeat_s: float = HEARTBEAT_S):
        self.path = Path(run_dir) / STATUS_FILE
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.fields: dict = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_write = 0.0
        self._rate: tuple[float, int] | None = None  # (time, step) when this process saw its first step
        self._work_start: tuple[float, str] | None = None  # (time, what) when the current work began

    @property
    def started(self) -> bool:
        return bool(self.fields)

    def phase(self, name: str, **extra) -> None:
        """Enter phase ``name`` (written at once); starts the heartbeat on the first call."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}")
        with self.lock:
            if not self.fields:
                now = self.clock()
                self.fields = {"phase": name, "step": 0, "total_steps": None, "eta_s": None, "pid": os.getpid(),
                               "host": socket.gethostname(), "started": now, "updated": now, "error": None,
                               "finished": None, "work": None}
            self.fields.update(phase=name, work=None, **extra)
            self._work_start = None
            if name in TERMINAL:
                self.fields["finished"] = self.clock()
                self.fields["eta_s"] = None
            self._write()
        if self._thread is None and name not in TERMINAL:
            self._thread = threading.Thread(target=self._beat, name="lmforge-status", daemon=True)
            self._thread.start()

    def progress(self, step: int, total: int) -> None:
        """Training reached optimizer step ``step`` of ``total`` (written at most every 0.5 s, and at the end)."""
        with self.lock:
            if not self.fields:
                return
            now = self.clock()
            if self._rate is None or step <= self._rate[1]:
                self._rate = (now, step)
                eta = None
            else:
                seconds_per_step = (now - self._rate[0]) / (step - self._rate[1])
                eta = round(seconds_per_step * (total - step), 1)
            self.fields.update(phase="train", step=step, total_steps=total, eta_s=eta)
            if step >= total or now - self._last_write >= _PROGRESS_EVERY_S:
                self._write()

    def work(self, what: str | None, done: int = 0, total: int = 0, unit: str = "") -> None:
        """``done`` of ``total`` ``unit`` of ``what`` finished in the current phase (written at most every 0.5 s,
        and when it starts and ends); ``what=None``: that work is over."""
        with self.lock:
            if not self.fields:
                return
            now = self.clock()
            if what is None:
                self.fields["work"], self._work_start = None, None
                self._write()
                return
            if self._work_start is None or self._work_start[1] != what or done == 0:
                self._work_start = (now, what)
            elapsed = now - self._work_start[0]
            eta = round(elapsed / done * (total - done), 1) if done and elapsed > 0 else None
            self.fields["work"] = {"what": what, "done": done, "total": total, "unit": unit, "eta_s": eta}
            if done in (0, total) or now - self._last_write >= _PROGRESS_EVERY_S:
                self._write()

    def close(self) -> None:
        """Stop the heartbeat (the file stays)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self.lock:
                if self.fields.get("phase") in TERMINAL:
                    return
                self._write()

    def _write(self) -> None:
        self.fields["updated"] = self._last_write = self.clock()
        atomic_write_text(self.path, json.dumps(self.fields) + "\n")


_active: StatusWriter | None = None


@contextlib.contextmanager
def tracking(run_dir: str | Path, *, enabled: bool = True) -> Iterator[StatusWriter | None]:
    """Make a :class:`StatusWriter` for ``run_dir`` the one :func:`set_phase` / :func:`set_progress`
    write to, for the duration of the block.

    On leaving the block: phase ``done``; on an exception, ``failed`` with its message (Ctrl-C:
    ``interrupted``), then the exception goes on. Nothing is written when no phase was set in the
    block (e.g. the run folder was refused before anything started). ``enabled=False`` (another
    process of a multi-process run) tracks nothing.
    """
    global _active
    if not enabled:
        yield None
        return
    writer, previous = StatusWriter(run_dir), _active
    _active = writer
    try:
        yield writer
    except KeyboardInterrupt:
        if writer.started:
            writer.phase("interrupted")
        raise
    except BaseException as exc:
        if writer.started:
            writer.phase("failed", error=(str(exc) or type(exc).__name__)[:2000])
        raise
    else:
        if writer.started:
            writer.phase("done")
    finally:
        writer.close()
        _active = previous


def set_phase(name: str, **extra) -> None:
    """Enter phase ``name`` in the active tracker (a no-op outside :func:`tracking`)."""
    if _active is not None:
        _active.phase(name, **extra)


def set_progress(step: int, total: int) -> None:
    """Report training step ``step`` of ``total`` to the active tracker (a no-op outside :func:`tracking`)."""
    if _active is not None:
        _active.progress(step, total)


def set_work(what: str | None, done: int = 0, total: int = 0, unit: str = "") -> None:
    """Report the progress of the phase's current work to the active tracker (see :meth:`StatusWriter.work`;
    a no-op outside :func:`tracking`)."""
    if _active is not None:
        _active.work(what, done, total, unit)


def read_status(run_dir: str | Path) -> dict | None:
    """The parsed status.json of ``run_dir``, or None when absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    try:  # a finished child nobody has waited for yet still answers kill(0)
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def run_state(run_dir: str | Path, status: dict | None = None, *, now: float | None = None,
              host: str | None = None) -> str:
    """``running``, ``finished``, ``failed`` or ``resumable`` for a run folder.

    - finished: status phase ``done``; without a status file (runs from before it existed),
      a ``results.json``;
    - running: a non-terminal phase, a heartbeat younger than :data:`STALE_S`, and, when the
      writer ran on this host, its process alive;
    - resumable: neither, and ``checkpoints/last`` exists (``lmforge train --resume`` continues it);
      a run whose last phase recorded an error stays ``failed`` (its error is in the status);
    - failed: everything else (an error, or a process that died before its first checkpoint).
    """
    run_dir = Path(run_dir)
    status = read_status(run_dir) if status is None else status
    has_checkpoint = (run_dir / "checkpoints" / "last").is_dir()
    if not status:
        if (run_dir / "results.json").is_file():
            return "finished"
        return "resumable" if has_checkpoint else "failed"
    phase = status.get("phase")
    if phase == "done":
        return "finished"
    if phase == "failed":
        return "failed"
    if phase not in TERMINAL:
        now = time.time() if now is None else now
        fresh = now - float(status.get("updated") or 0) < STALE_S
        here = (host or socket.gethostname()) == status.get("host")
        if fresh and (not here or pid_alive(status.get("pid"))):
            return "running"
    return "resumable" if has_checkpoint else "failed"
