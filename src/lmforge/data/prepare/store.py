"""Compact state for streaming preparation: integer-key tables, on-disk byte stores, JSONL spools.

A prepare run never holds the records; it holds per-example state of a few bytes each:

- :class:`KeyTable`: a multimap from 64-bit integer keys to integer ids in a temporary SQLite
  database on disk (bounded page cache) plus a small insert buffer. Used for exact-duplicate
  hashes, label votes and the LSH band index.
- :class:`DiskStore`: append-only byte strings in an anonymous temp file; RAM holds one 8-byte
  offset per item. Used for MinHash signatures and ``_where`` strings, read back only for the
  rare candidate duplicate.
- :func:`write_jsonl` / :func:`read_jsonl`: stream records to and from a JSONL spool file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from array import array



class KeyTable:
    """Multimap ``int key (0 <= key < 2**64) -> int id``, kept on disk (SQLite, standard library).

    A private temporary SQLite database (deleted when closed; placed in ``$SQLITE_TMPDIR`` /
    ``$TMPDIR``) holds the pairs with an index on the key; its page cache is capped at
    ``cache_mib``. Up to ``buffer`` pending pairs wait in a dict and are inserted in one
    transaction. RAM therefore stays bounded whatever the number of keys.
    """

    def __init__(self, buffer: int = 256, cache_mib: int = 8):
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{cache_mib * 1024}", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE pairs (k INTEGER NOT NULL, v INTEGER NOT NULL)")
        self._db.execute("CREATE INDEX by_key ON pairs (k)")
        self._pending: dict[int, list[int]] = {}
        self._n_pending = 0
        self._limit = buffer
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def get(self, keys: list[int]) -> list[int]:
        """All ids stored under any of ``keys`` (no repeats), oldest first."""
        found: list[int] = []
        if self._count > self._n_pending:
            marks = ",".join("?" * len(keys))
            rows = self._db.execute(f"SELECT v FROM pairs WHERE k IN ({marks}) ORDER BY rowid", [_signed(k) for k in keys])
            found = [v for (v,) in rows]
        for key in keys:
            found.extend(self._pending.get(key, ()))
        return list(dict.fromkeys(found))

    def add(self, keys: list[int], item_id: int) -> None:
        """Store ``item_id`` under each of ``keys``."""
        for key in keys:
            self._pending.setdefault(key, []).append(item_id)
        self._n_pending += len(keys)
        self._count += len(keys)
        if self._n_pending >= self._limit:
            self._flush()

    def _flush(self) -> None:
        rows = [(_signed(k), v) for k, ids in self._pending.items() for v in ids]
        rows.sort(key=lambda r: r[1])  # insertion order of ids = rowid order
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO pairs VALUES (?, ?)", rows)
        self._db.execute("COMMIT")
        self._pending, self._n_pending = {}, 0

    def close(self) -> None:
        self._db.close()


def _signed(key: int) -> int:
    """uint64 -> int64 (SQLite integers are signed)."""
    return key - (1 << 64) if key >= 1 << 63 else key


class DiskStore:
    """Append-only byte strings kept in an anonymous temp file (deleted on close or exit).

    RAM: one int64 offset per item. ``get`` is a positioned read (no seek state).
    """

    def __init__(self, folder: str | Path | None = None):
        self._file: IO[bytes] = tempfile.TemporaryFile(dir=folder, buffering=0)
        self._fd = self._file.fileno()
        self._offsets = array("q", [0])
        self._end = 0

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def append(self, data: bytes) -> int:
        """Store ``data``; returns its id (0, 1, 2, ...)."""
        os.write(self._fd, data)
        self._end += len(data)
        self._offsets.append(self._end)
        return len(self._offsets) - 2

    def get(self, item_id: int) -> bytes:
        """The bytes stored under ``item_id``."""
        start, end = self._offsets[item_id], self._offsets[item_id + 1]
        return os.pread(self._fd, end - start, start)

    def close(self) -> None:
        self._file.close()


def write_jsonl(fh: IO[str], record: dict) -> None:
    """Append one record as a JSON line (UTF-8 kept, key order kept)."""
    fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Records of a JSONL spool written by :func:`write_jsonl`, one at a time."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def spool(records: Iterable[dict], path: str | Path) -> int:
    """Write ``records`` to ``path`` (JSONL); returns how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            write_jsonl(fh, record)
            n += 1
    return n
