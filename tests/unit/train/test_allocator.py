"""glibc keeps freed memory while training and gives it back afterwards (lmforge.train.allocator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lmforge.train import allocator
from lmforge.train.runtime import Runtime

pytestmark = pytest.mark.skipif(allocator._glibc() is None, reason="glibc malloc only (Linux with glibc)")


_HEAP_PROBE = """
import ctypes, json, torch
from lmforge.train import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = allocator._glibc()
libc.mallinfo2.restype = MallInfo2
size = 16 * 1024 * 1024
with allocator.keep_freed_memory() as applied:
    block = torch.empty(size // 4)
    block.fill_(1.0)
    del block
    kept = libc.mallinfo2().fordblks
print(json.dumps({"applied": applied, "size": size, "kept": kept, "after": libc.mallinfo2().fordblks}))
"""


def test_freed_blocks_stay_in_the_heap_while_applied_and_are_returned_after():
    # A fresh process: in the test session's own heap, whatever earlier tests left live above the freed
    # block decides whether malloc_trim can shrink the heap top (a CI run saw the same free bytes after the
    # trim as before). 16 MiB is below the 32 MiB mmap threshold set here and above glibc's starting 128 KiB.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    heap = json.loads(out.stdout.strip().splitlines()[-1])
    assert heap["applied"]
    assert heap["kept"] >= heap["size"], "a freed 16 MiB block must stay in the heap for the next step"
    assert heap["after"] < heap["kept"] - heap["size"] // 2, "leaving the context trims the kept memory back"


def test_disabled_or_off_glibc_changes_nothing(monkeypatch):
    with allocator.keep_freed_memory(enabled=False) as applied:
        assert applied is False
    monkeypatch.setattr(sys, "platform", "darwin")
    with allocator.keep_freed_memory() as applied:
        assert applied is False


def test_runtime_applies_it_on_cpu_until_finish(monkeypatch):
    calls = []

    def fake(enabled=True):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            calls.append("enter")
            yield True
            calls.append("exit")
        return ctx()

    monkeypatch.setattr("lmforge.train.runtime.keep_freed_memory", fake)
    runtime = Runtime(device=torch.device("cpu"), precision="fp32")
    model = torch.nn.Linear(2, 2)
    runtime.prepare(model)
    assert calls == ["enter"]
    runtime.finish(model)
    assert calls == ["enter", "exit"]
