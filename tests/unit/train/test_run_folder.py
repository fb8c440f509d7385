"""The run folder a training run claims: another process training in it now is refused (both with and without
--resume); a finished, killed or stale one is not."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from lmforge.config import parse_config
from lmforge.errors import UserError
from lmforge.train.run_folder import open_run_folder


def _config(run_dir):
    return parse_config({"model": {"name": "m"}, "data": {"format": "text", "train": "t.txt"},
                         "run": {"output_dir": str(run_dir)}})


def _status(run_dir, pid, *, phase="train", age=0.0, host=None):
    (run_dir / "status.json").write_text(json.dumps({
        "phase": phase, "pid": pid, "host": host or socket.gethostname(), "step": 7, "total_steps": 40,
        "started": time.time() - 60, "updated": time.time() - age}))


def test_a_run_another_process_is_training_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    open_run_folder(_config(run_dir), resume=False)  # claims it (marker written)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _status(run_dir, other.pid)
        for resume in (False, True):
            with pytest.raises(UserError, match=rf"another process is training this run now \(pid {other.pid}") as err:
                open_run_folder(_config(run_dir), resume=resume)
            assert "step 7" in str(err.value) and "--resume" in err.value.hint
        _status(run_dir, other.pid, age=600)  # a heartbeat this old: the writer is gone whatever the pid says
        open_run_folder(_config(run_dir), resume=True)
        _status(run_dir, other.pid, phase="done")
        open_run_folder(_config(run_dir), resume=True)
    finally:
        other.kill()
        other.wait()
    _status(run_dir, other.pid)  # a fresh heartbeat from a process that has died (killed): resumable
    open_run_folder(_config(run_dir), resume=True)
