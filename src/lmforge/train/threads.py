"""CPU threads that survive a busy machine: how many, and how idle OpenMP threads wait.

torch runs every CPU op on an OpenMP team of ``torch.get_num_threads()`` threads that meet at a
barrier after each op. When another process keeps one of the cores busy, the thread sharing its
core is descheduled for whole scheduler slices and every barrier waits for it: on a 2-core
machine a LoRA step went from 1.3 s (1 thread) to 12 s (2 threads, torch's default) while
another job ran (shared/PITFALLS.md). So the thread count is chosen from the CPUs this process
may actually use (affinity mask, cgroup CPU quota) minus those other processes are keeping busy
right now (sampled from ``/proc/stat``), and chosen again between phases (evaluation before
training, training, each evaluation, evaluation after): ``torch.set_num_threads`` can change at
any time.

The OpenMP wait policy cannot: libgomp reads ``OMP_WAIT_POLICY`` once, when torch is imported.
:func:`choose_wait_policy` is therefore called by the CLI before anything imports torch: on a
machine already busy it sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of
spinning on a core another job needs); on an idle machine it leaves libgomp's default (spin
briefly, then sleep). A value the user set is never changed, and neither is an explicit thread
count (``threads: N``).

This module imports no torch at module level (the CLI calls it first).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_S = 0.3  # how long /proc/stat is sampled for the load of other processes
# A core counts as taken by others from this much sustained use on (fractions of a CPU).
BUSY_THRESHOLD = 0.35


@dataclass(frozen=True)
class ThreadChoice:
    """What :func:`choose_threads` decided and why.

    threads: torch intra-op threads to use. usable: CPUs this process may run on (affinity and
    cgroup quota). busy_elsewhere: CPUs (of the usable ones) other processes kept busy during the
    sample, or None when not measured. requested: the configured value (None = automatic).
    wait_policy: ``OMP_WAIT_POLICY`` in this process's environment (None = libgomp's default).
    """

    threads: int
    usable: int
    busy_elsewhere: float | None
    requested: int | None
    wait_policy: str | None

    def describe(self) -> str:
        """One log line, e.g. ``threads: 1 of 2 usable CPUs (1.0 CPU busy with other processes)``."""
        if self.requested is not None:
            why = "as configured"
        elif self.busy_elsewhere is None:
            why = "shared with sibling processes or load not measurable"
        else:
            why = f"{self.busy_elsewhere:.1f} CPU busy with other processes"
        policy = self.wait_policy or "default"
        return f"threads: {self.threads} of {self.usable} usable CPUs ({why}; OpenMP wait policy {policy})"


def usable_cpus(cgroup_root: str | Path = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (rounded up)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota - 1e-9)))
    return max(1, count)


def cgroup_cpu_quota(root: str | Path = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by this process's cgroup quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None = no quota."""
    root = Path(root)
    for folder in _cgroup_dirs(root):
        v2 = folder / "cpu.max"
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            if quota != "max" and period:
                return int(quota) / int(period)
            return None
        v1 = folder / "cpu.cfs_quota_us"
        if v1.is_file():
            quota_us = int(v1.read_text().strip())
            period_us = int((folder / "cpu.cfs_period_us").read_text().strip())
            return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def _cgroup_dirs(root: Path) -> list[Path]:
    """This process's own cgroup folder(s) under ``root`` first, then ``root`` (v2) and ``root/cpu`` (v1)."""
    found: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":
            found.append(root / rel)
        elif "cpu" in controllers.split(","):
            found.append(root / controllers / rel)
            found.append(root / "cpu" / rel)
    return [d for d in found + [root, root / "cpu"] if d.is_dir()]


def busy_elsewhere(cpus: set[int] | None = None, seconds: float = SAMPLE_S) -> float | None:
    """CPUs kept busy by other processes over ``seconds`` (busy time on ``cpus`` minus this process's own).

    Reads ``/proc/stat`` twice (busy = everything but idle and iowait, so steal time counts as
    busy); this process's CPU time over the same interval (all its threads) is subtracted.
    None where ``/proc/stat`` is not readable.
    """
    if cpus is None:
        try:
            cpus = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = None
    first, own0, t0 = _proc_stat_busy(cpus), _own_cpu_seconds(), time.monotonic()
    if first is None:
        return None
    time.sleep(seconds)
    second, own1, t1 = _proc_stat_busy(cpus), _own_cpu_seconds(), time.monotonic()
    if second is None or t1 <= t0:
        return None
    busy = (second - first) / _clock_ticks() - (own1 - own0)
    return max(0.0, busy / (t1 - t0))


def _proc_stat_busy(cpus: set[int] | None) -> int | None:
    """Busy clock ticks summed over ``cpus`` (all CPUs when None) from ``/proc/stat``."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(values) - values[3] - values[4]
    return total


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 100


def choose_threads(requested: int | None, usable: int, busy: float | None) -> int:
    """The thread count: ``requested`` when set; else the usable CPUs minus those taken by others.

    A CPU counts as taken when other processes keep at least :data:`BUSY_THRESHOLD` of one busy
    (one thread sharing a core with another job stalls every barrier); at least 1 thread.
    """
    if requested is not None:
        return requested
    if busy is None:
        return usable
    return max(1, usable - max(0, math.ceil(busy - BUSY_THRESHOLD)))


def apply_thread_policy(requested: int | None, phase: str = "", say=print, sample_s: float = SAMPLE_S) -> ThreadChoice:
    """Choose the threads for the next phase, ``torch.set_num_threads`` them, log when it changes.

    ``requested``: the configured thread count (``runtime.threads``; None = automatic: an
    ``OMP_NUM_THREADS`` set in the environment, else the free CPUs). ``phase`` is only for the log
    line ("train", "eval", ...). Returns the :class:`ThreadChoice`.
    """
    import torch

    if requested is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        requested = max(1, int(os.environ["OMP_NUM_THREADS"]))  # the user's explicit choice
    usable = usable_cpus()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if requested is None and local_processes > 1:
        # Sibling training processes would read as "other load": split the CPUs between them instead.
        requested_here, busy = max(1, usable // local_processes), None
    else:
        requested_here, busy = requested, None if requested is not None else busy_elsewhere(seconds=sample_s)
    choice = ThreadChoice(threads=choose_threads(requested_here, usable, busy), usable=usable, busy_elsewhere=busy,
                          requested=requested, wait_policy=os.environ.get("OMP_WAIT_POLICY"))
    if torch.get_num_threads() != choice.threads or _LAST.get("threads") != choice.threads:
        torch.set_num_threads(choice.threads)
        say(choice.describe() + (f" [{phase}]" if phase else ""))
        _LAST["threads"] = choice.threads
    return choice


_LAST: dict[str, int | None] = {"threads": None}  # the count last logged in this process


def choose_wait_policy(environ: dict | None = None, busy: float | None = None, sample_s: float = SAMPLE_S) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` when other processes keep a CPU busy now.

    Must run before torch is imported (libgomp reads the variable once, at load). Leaves a value
    the user set, and an idle machine, alone. Returns the policy now in ``environ`` (None = unset).
    """
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in environ:
        return environ["OMP_WAIT_POLICY"]
    if busy is None:
        busy = busy_elsewhere(seconds=sample_s)
    if busy is not None and busy >= BUSY_THRESHOLD:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return environ.get("OMP_WAIT_POLICY")


def release_openmp_workers() -> bool:
    """Free the calling thread's idle OpenMP worker threads (OpenMP 5.0 ``omp_pause_resource_all``, soft pause).

    Call it from the thread that loaded a model right before another thread takes over all the compute (the
    server's generation worker). libgomp keeps one team of workers per thread that ever ran a parallel op; while
    the loading thread's team exists, the workers outnumber the cores and libgomp throttles its spin-waiting, so
    every op of the other thread's team waits for sleeping workers to wake: measured on a 2-core EPYC, a 576 x 576
    int8 matmul of one row took 21-50 us from a second thread instead of 7 us, and a served stream decoded at
    40 instead of 75 tokens/s. After the pause the next parallel op of this thread builds its team again, so
    nothing breaks; it only costs that thread's next op a few microseconds. Returns whether libgomp accepted it
    (False when torch does not use libgomp, e.g. on macOS).
    """
    pause = _omp_pause_resource_all()
    return pause is not None and pause(1) == 0  # 1 = omp_pause_soft


_PAUSE: list = []  # libgomp's omp_pause_resource_all, once found


def _omp_pause_resource_all():
    """libgomp's ``omp_pause_resource_all`` as loaded by torch, looked up once it is loaded (the server calls
    it per idle batch); None while no libgomp is mapped."""
    if _PAUSE:
        return _PAUSE[0]
    import ctypes

    try:
        path = next((line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                     if "libgomp" in line.rsplit("/", 1)[-1]), None)
        pause = ctypes.CDLL(path).omp_pause_resource_all if path else None
    except (OSError, AttributeError):
        return None
    if pause is not None:
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        _PAUSE.append(pause)
    return pause
