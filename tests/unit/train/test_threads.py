"""Thread policy: usable CPUs (affinity, cgroup quota), load of other processes, the choice, the wait policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from lmforge.train import threads
from lmforge.train.threads import (
    apply_thread_policy,
    cgroup_cpu_quota,
    choose_threads,
    choose_wait_policy,
    usable_cpus,
)


@pytest.mark.parametrize(("busy", "expected"), [
    (0.0, 2), (0.3, 2),          # idle, or light noise: both cores
    (0.4, 1), (1.0, 1),          # one core kept busy by another job: one thread
    (1.9, 1), (5.0, 1),          # overloaded: never below one
])
def test_choose_threads_leaves_cores_other_jobs_use(busy, expected):
    assert choose_threads(None, usable=2, busy=busy) == expected


def test_choose_threads_explicit_and_unmeasured():
    assert choose_threads(3, usable=2, busy=1.5) == 3  # the user's value wins
    assert choose_threads(None, usable=8, busy=None) == 8
    assert choose_threads(None, usable=8, busy=2.2) == 6


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(v2) == pytest.approx(1.5)
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path / "v1") == pytest.approx(2.0)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path / "v1") is None
    assert cgroup_cpu_quota(tmp_path / "nothing") is None


def test_usable_cpus_is_capped_by_a_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU still means one thread
    assert usable_cpus(tmp_path) == 1
    assert usable_cpus(tmp_path / "none") == len(os.sched_getaffinity(0))


def test_proc_stat_busy_counts_only_the_given_cpus(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 100 5 0 0 0 0 0\ncpu0 7 0 3 50 5 0 0 0 0 0\ncpu1 3 0 7 50 0 0 0 4 0 0\nintr 1 2\n")
    monkeypatch.setattr(threads, "Path", lambda _p: stat)
    assert threads._proc_stat_busy({0}) == 10  # user + system; idle and iowait are not busy
    assert threads._proc_stat_busy({1}) == 14  # steal time counts as busy
    assert threads._proc_stat_busy(None) == 24


def test_busy_elsewhere_is_a_fraction_of_cpus_and_excludes_this_process():
    busy = threads.busy_elsewhere(seconds=0.05)
    assert busy is None or 0.0 <= busy <= len(os.sched_getaffinity(0)) + 0.5


def test_apply_thread_policy_sets_torch_threads(monkeypatch):
    lines = []
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setitem(threads._LAST, "threads", None)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda seconds: 1.0)
    try:
        choice = apply_thread_policy(None, phase="eval", say=lines.append)
        assert choice.threads == torch.get_num_threads() == 1 and choice.busy_elsewhere == 1.0
        assert lines and "threads: 1 of 2 usable CPUs (1.0 CPU busy with other processes" in lines[-1]
        assert lines[-1].endswith("[eval]")
        monkeypatch.setattr(threads, "busy_elsewhere", lambda seconds: 0.0)
        assert apply_thread_policy(None, say=lines.append).threads == torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # an explicit environment value is the user's choice
        assert apply_thread_policy(None, say=lines.append).threads == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # sibling ranks split the CPUs, no sampling
        monkeypatch.setattr(threads, "busy_elsewhere", lambda seconds: pytest.fail("sampled"))
        assert apply_thread_policy(None, say=lines.append).threads == 1
        assert apply_thread_policy(2, say=lines.append).describe().startswith("threads: 2 of 2 usable CPUs (as configured")
    finally:
        torch.set_num_threads(before)


def test_wait_policy_passive_only_when_busy_and_never_over_the_user():
    env: dict = {}
    assert choose_wait_policy(env, busy=0.1) is None and "OMP_WAIT_POLICY" not in env
    assert choose_wait_policy(env, busy=1.0) == "PASSIVE" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    user = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert choose_wait_policy(user, busy=2.0) == "ACTIVE"


def test_threads_module_imports_without_torch():
    """The CLI chooses the wait policy before torch loads (libgomp reads it once)."""
    code = "import sys, lmforge.train.threads as t; t.choose_wait_policy({}, busy=0.0); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_sets_the_wait_policy_before_torch_loads(tmp_path):
    """`lmforge train` on a busy machine: OMP_WAIT_POLICY=PASSIVE is in the environment before torch is imported."""
    code = (
        "import os, sys\n"
        "import lmforge.train.threads as t\n"
        "t.busy_elsewhere = lambda seconds=0.3, cpus=None: 1.0  # another job keeps a core busy\n"
        "from lmforge.cli.main import main\n"
        f"rc = main(['train', {str(tmp_path / 'missing.yaml')!r}])\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), rc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split()[-2:] == ["PASSIVE", "2"]


def test_release_openmp_workers_frees_the_team_and_ops_still_work():
    """In a fresh process with 2 OpenMP threads: after the release a second thread's parallel ops give the same
    numbers (the team is rebuilt on demand); the release reports success where torch uses libgomp."""
    import os
    import subprocess
    import sys

    code = """
import threading, torch
torch.set_num_threads(2)
from lmforge.train.threads import release_openmp_workers
x = torch.arange(4096, dtype=torch.float32).reshape(64, 64) / 4096
ref = (x @ x).sum().item()
ok = release_openmp_workers()
out = {}
t = threading.Thread(target=lambda: out.update(v=(x @ x).sum().item())); t.start(); t.join()
again = (x @ x).sum().item()
uses_gomp = any("libgomp" in line for line in open("/proc/self/maps"))
print(ok == uses_gomp, out["v"] == ref == again)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "True"]
