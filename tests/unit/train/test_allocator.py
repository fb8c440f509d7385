"""glibc keeps freed memory while training and gives it back afterwards (lmforge.train.allocator)."""

from __future__ import annotations

import ctypes
import sys

import pytest
import torch

from lmforge.train import allocator
from lmforge.train.runtime import Runtime

pytestmark = pytest.mark.skipif(allocator._glibc() is None, reason="glibc malloc only (Linux with glibc)")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _heap() -> _MallInfo2:
    libc = allocator._glibc()
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2()


def test_freed_blocks_stay_in_the_heap_while_applied_and_are_returned_after():
    size = 16 * 1024 * 1024  # 16 MiB: below the 32 MiB threshold, above glibc's starting 128 KiB one
    with allocator.keep_freed_memory() as applied:
        assert applied
        block = torch.empty(size // 4)
        block.fill_(1.0)
        del block
        kept = _heap().fordblks  # free bytes the heap keeps
        assert kept >= size, "a freed 16 MiB block must stay in the heap for the next step"
    assert _heap().fordblks < kept, "leaving the context trims the kept memory back to the system"


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
