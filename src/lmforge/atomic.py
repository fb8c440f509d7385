"""Atomic writes: a file or folder either appears whole or not at all.

Used by every stage that writes into a run directory, so an interrupted run never leaves a
half-written checkpoint, config or report behind. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from lmforge.errors import storage_error


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the mode open() would
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        full = storage_error(exc, str(path))
        if full is not None:
            raise full from full.__cause__
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` in one rename.

    An existing ``path`` is moved aside first and removed only after the new folder is in
    place, so a crash at any point leaves either the old or the new folder complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: give the folder the mode mkdir would
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        full = storage_error(exc, str(path))
        if full is not None:  # the half-written temporary is gone; ``path`` is untouched
            raise full from full.__cause__
        raise
    publish_dir(tmp, path)


def publish_dir(staged: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Put the finished folder ``staged`` (on the same file system) in place of ``path`` by renames.

    An existing ``path`` is moved aside to ``.<name>.old`` first and removed only after the new
    folder is in place, so a crash at any point leaves either the old or the new folder complete
    (the old one possibly under ``.<name>.old``).
    """
    staged, path = Path(staged), Path(path)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(staged, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


# Names of the temporaries above: "." + target name + "." + 8 random characters + ".tmp".
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def remove_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporaries that writes into ``folder`` left behind when the process was killed
    mid-write (files and folders named like :func:`atomic_write_bytes` / :func:`atomic_dir` name
    theirs); ``name``: only those of that target (e.g. "export"). Call it only on a folder lmforge
    owns, when nothing else writes that target. Returns the removed paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        if not _TEMPORARY.match(entry.name) or (name is not None and not entry.name.startswith(f".{name}.")):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
