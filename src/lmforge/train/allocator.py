"""Keep freed memory in the process while a CPU run trains (glibc malloc settings).

PyTorch's CPU tensors come from the C library's ``malloc``. glibc's defaults hand memory back to the
operating system as soon as a little of it is free at the top of the heap (``M_TRIM_THRESHOLD``,
adjusted dynamically) and serve large blocks by fresh ``mmap`` calls. A training step frees most of
its activations during backward and allocates them again in the next forward, so with the defaults
each step faults its working set back in page by page: on the 2-core Intel Xeon of
benchmarks/RESULTS.md a 110M full fine-tuning run made 8-17% fewer tokens/s over 9 steps than with the
settings below (7-11% past the first three steps, which suffered most; same tokens, same loss).

:func:`keep_freed_memory` sets, through glibc's documented ``mallopt``: blocks up to 32 MiB come from
the heap (``M_MMAP_THRESHOLD``, glibc's own dynamic upper bound), the heap is not trimmed while
training (``M_TRIM_THRESHOLD``) and grows in 256 MiB steps (``M_TOP_PAD``; untouched pages cost no
memory). The peak resident memory does not grow: it is the high-water mark either way. On exit it
restores trimming and returns the free memory (``malloc_trim``), so evaluation and export run with
the process's usual footprint. Anything that is not glibc (macOS, musl) is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from typing import Iterator

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the largest it accepts
TOP_PAD = 256 * 1024 * 1024
NO_TRIM = 2**31 - 1  # mallopt takes an int: trim only past 2 GiB free at the top
DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's default
DEFAULT_TOP_PAD = 128 * 1024  # glibc's DEFAULT_TOP_PAD (64-bit)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # absent outside glibc (musl): AttributeError
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def _set(libc: ctypes.CDLL, option: int, value: int) -> bool:
    return bool(libc.mallopt(option, value))


@contextlib.contextmanager
def keep_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Context: glibc keeps freed memory for reuse instead of returning it (see module doc).
    Yields whether the settings took effect (False off glibc or when ``enabled`` is False)."""
    libc = _glibc() if enabled else None
    applied = libc is not None and all(
        _set(libc, option, value)
        for option, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TOP_PAD, TOP_PAD), (M_TRIM_THRESHOLD, NO_TRIM)))
    try:
        yield applied
    finally:
        if libc is not None:
            # The mmap threshold stays fixed at 32 MiB (mallopt switches off glibc's dynamic one for good;
            # 32 MiB is the value that dynamic threshold grows to in a process like this anyway).
            _set(libc, M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
            _set(libc, M_TOP_PAD, DEFAULT_TOP_PAD)
            libc.malloc_trim(0)
