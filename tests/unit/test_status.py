"""<run>/status.json: the writer, the tracking block, and the state derived from folder + heartbeat + pid."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lmforge import status
from lmforge.status import StatusWriter, read_status, run_state, tracking


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_writer_writes_nothing_before_its_first_phase(tmp_path):
    writer = StatusWriter(tmp_path)
    writer.progress(3, 10)
    assert not (tmp_path / "status.json").exists()


def test_phases_progress_and_eta(tmp_path):
    clock = Clock()
    writer = StatusWriter(tmp_path, clock=clock, heartbeat_s=3600)
    writer.phase("load")
    first = read_status(tmp_path)
    assert first["phase"] == "load" and first["pid"] == os.getpid() and first["host"] == socket.gethostname()
    assert first["started"] == first["updated"] == 1000.0
    writer.progress(0, 10)  # the loop's on_begin
    clock.t += 4.0
    writer.progress(2, 10)  # 2 s per step since step 0 -> 8 steps left = 16 s
    got = read_status(tmp_path)
    assert (got["phase"], got["step"], got["total_steps"], got["eta_s"]) == ("train", 2, 10, 16.0)
    clock.t += 0.1
    writer.progress(3, 10)  # within 0.5 s of the last write: not written yet
    assert read_status(tmp_path)["step"] == 2
    clock.t += 0.1
    writer.progress(10, 10)  # the last step is always written
    assert read_status(tmp_path)["step"] == 10
    writer.phase("done")
    final = read_status(tmp_path)
    assert final["finished"] == clock.t and final["eta_s"] is None and final["started"] == 1000.0
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]  # atomic writes leave no temp files


def test_unknown_phase_is_refused(tmp_path):
    with pytest.raises(ValueError):
        StatusWriter(tmp_path).phase("dreaming")


def test_heartbeat_refreshes_updated_without_calls(tmp_path):
    writer = StatusWriter(tmp_path, heartbeat_s=0.05)
    writer.phase("before-eval")
    first = read_status(tmp_path)["updated"]
    deadline = time.time() + 10
    while read_status(tmp_path)["updated"] == first and time.time() < deadline:
        time.sleep(0.02)
    assert read_status(tmp_path)["updated"] > first and read_status(tmp_path)["phase"] == "before-eval"
    writer.close()


def test_tracking_marks_done_failed_and_interrupted(tmp_path):
    with tracking(tmp_path / "a"):
        (tmp_path / "a").mkdir()
        status.set_phase("load")
        status.set_progress(4, 4)
    assert read_status(tmp_path / "a")["phase"] == "done"
    with pytest.raises(RuntimeError), tracking(tmp_path / "b"):
        (tmp_path / "b").mkdir()
        status.set_phase("export")
        raise RuntimeError("parity check failed: max |diff| 0.3")
    got = read_status(tmp_path / "b")
    assert got["phase"] == "failed" and got["error"] == "parity check failed: max |diff| 0.3"
    with pytest.raises(KeyboardInterrupt), tracking(tmp_path / "c"):
        (tmp_path / "c").mkdir()
        status.set_phase("train")
        raise KeyboardInterrupt
    assert read_status(tmp_path / "c")["phase"] == "interrupted"


def test_tracking_writes_nothing_when_refused_early_or_disabled(tmp_path):
    with pytest.raises(ValueError), tracking(tmp_path):
        raise ValueError("this run folder already holds checkpoints")
    with tracking(tmp_path, enabled=False):
        status.set_phase("load")  # another process of a multi-process run
    assert not (tmp_path / "status.json").exists()
    status.set_phase("load")  # outside any tracking: a no-op
    assert not (tmp_path / "status.json").exists()


def _status(tmp_path, **fields):
    data = {"phase": "train", "step": 3, "total_steps": 9, "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.time() - 20, "updated": time.time(), **fields}
    (tmp_path / "status.json").write_text(json.dumps(data))
    return data


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_state_running_needs_a_fresh_heartbeat_and_a_live_process(tmp_path):
    _status(tmp_path)
    assert run_state(tmp_path) == "running"
    _status(tmp_path, pid=_dead_pid())
    assert run_state(tmp_path) == "failed"  # died before any checkpoint
    (tmp_path / "checkpoints" / "last").mkdir(parents=True)
    assert run_state(tmp_path) == "resumable"
    _status(tmp_path, updated=time.time() - status.STALE_S - 1)  # alive pid, dead heartbeat (a reused pid)
    assert run_state(tmp_path) == "resumable"


def test_state_on_another_host_follows_the_heartbeat(tmp_path):
    _status(tmp_path, host="gpu-box-7", pid=_dead_pid())
    assert run_state(tmp_path) == "running"  # its pid means nothing here
    _status(tmp_path, host="gpu-box-7", updated=time.time() - status.STALE_S - 1)
    assert run_state(tmp_path) == "failed"


def test_a_zombie_child_is_not_alive(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 20
    while status.pid_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not status.pid_alive(proc.pid)  # exited, not yet waited for
    proc.wait()


def test_state_finished_failed_and_legacy_folders(tmp_path):
    _status(tmp_path, phase="done")
    assert run_state(tmp_path) == "finished"
    (tmp_path / "checkpoints" / "last").mkdir(parents=True)
    _status(tmp_path, phase="failed", error="boom")
    assert run_state(tmp_path) == "failed"  # an error was recorded: not silently "resumable"
    _status(tmp_path, phase="interrupted")
    assert run_state(tmp_path) == "resumable"
    legacy = tmp_path / "legacy"  # runs from before status.json
    (legacy / "checkpoints" / "last").mkdir(parents=True)
    assert run_state(legacy) == "resumable"
    (legacy / "results.json").write_text("{}")
    assert run_state(legacy) == "finished"
    (tmp_path / "empty").mkdir()
    assert run_state(tmp_path / "empty") == "failed"


def test_unreadable_status_is_ignored(tmp_path):
    (tmp_path / "status.json").write_text("{half")
    assert read_status(tmp_path) is None and run_state(tmp_path) == "failed"
