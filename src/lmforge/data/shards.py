"""Tokenized corpora larger than RAM: memory-mapped shards written once, read by index.

:func:`write_token_shards` streams encoded features (any iterable, e.g. a generator that
encodes records lazily) into a folder, holding at most ``shard_tokens`` tokens in memory;
:class:`TokenShards` reads them back through ``numpy.memmap``, so only the pages of the examples
being touched are resident. ``TokenShards`` is a plain sequence (``len`` + ``[i]``): the training
loop consumes it in place of a list of features.

Folder layout (int32 token ids / labels, int64 index; little-endian, native numpy raw files):
  meta.json               format version, field names, example / token counts, shard sizes
  index.i64               (examples, 3 + scalars) rows: shard, start offset, length, scalar fields
  <shard>.<field>.i32     the concatenated values of one per-token field (input_ids, labels, ...)
Per-token fields are list values as long as ``input_ids``; scalar fields are ints (e.g. the
class ``label``). The folder appears whole or not at all (:func:`lmforge.atomic.atomic_dir`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.atomic import atomic_dir

FORMAT = "lmforge-token-shards/1"
TOKEN_DTYPE, INDEX_DTYPE = np.int32, np.int64


def write_token_shards(features: Iterable[dict[str, Any]], folder: str | Path, shard_tokens: int = 1 << 24) -> Path:
    """Write ``features`` (dicts with ``input_ids`` and more per-token or int fields) as shards.

    Memory: one buffer of ``shard_tokens`` tokens per per-token field plus one index row per
    example of the current shard (an example longer than ``shard_tokens`` gets a shard alone).
    The field names are taken from the first feature; every feature must have the same ones.
    Returns ``folder``. Raises ValueError on an empty iterable or mismatched fields.
    """
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
    with atomic_dir(folder) as tmp:
        writer = _ShardWriter(tmp, shard_tokens)
        for feature in features:
            writer.add(feature)
        writer.close()
    return Path(folder)


class _ShardWriter:
    """Buffers features up to ``shard_tokens`` tokens, then writes one shard and its index rows."""

    def __init__(self, folder: Path, shard_tokens: int):
        self.folder, self.capacity = folder, shard_tokens
        self.token_fields: list[str] | None = None
        self.scalar_fields: list[str] = []
        self.shards: list[int] = []
        self.examples = 0
        self.index = (folder / "index.i64").open("wb")

    def _start(self, feature: dict[str, Any]) -> None:
        length = len(feature["input_ids"])
        fields = _fields(feature)
        self.token_fields = [k for k in fields if isinstance(feature[k], (list, tuple, np.ndarray))
                             and len(feature[k]) == length]
        self.scalar_fields = [k for k in fields if isinstance(feature[k], (int, np.integer))
                              and not isinstance(feature[k], bool)]
        self.buffers = {k: np.empty(self.capacity, dtype=TOKEN_DTYPE) for k in self.token_fields}
        self.used, self.rows = 0, []

    def add(self, feature: dict[str, Any]) -> None:
        if self.token_fields is None:
            self._start(feature)
        length = len(feature["input_ids"])
        if length == 0:
            raise ValueError(f"feature {self.examples} has no tokens")
        if set(self.token_fields) | set(self.scalar_fields) != set(_fields(feature)):
            raise ValueError(f"feature {self.examples} has fields {sorted(feature)}, expected "
                             f"{sorted(self.token_fields + self.scalar_fields)}")
        if self.used + length > self.capacity and self.used > 0:
            self._flush()
        if length > self.capacity:  # too long for a buffer: a shard of its own
            self._write_shard({k: np.asarray(feature[k], dtype=TOKEN_DTYPE) for k in self.token_fields}, length)
            self._write_rows([[len(self.shards) - 1, 0, length, *self._scalars(feature)]])
            self.examples += 1
            return
        for key in self.token_fields:
            if len(feature[key]) != length:
                raise ValueError(f"feature {self.examples}: '{key}' has {len(feature[key])} values, input_ids {length}")
            self.buffers[key][self.used : self.used + length] = feature[key]
        self.rows.append([len(self.shards), self.used, length, *self._scalars(feature)])
        self.used += length
        self.examples += 1

    def _scalars(self, feature: dict[str, Any]) -> list[int]:
        return [int(feature[k]) for k in self.scalar_fields]

    def _flush(self) -> None:
        if self.rows:
            self._write_shard({k: b[: self.used] for k, b in self.buffers.items()}, self.used)
            self._write_rows(self.rows)
        self.used, self.rows = 0, []

    def _write_shard(self, arrays: dict[str, np.ndarray], tokens: int) -> None:
        name = f"{len(self.shards):05d}"
        for key, values in arrays.items():
            values.astype(TOKEN_DTYPE, copy=False).tofile(self.folder / f"{name}.{key}.i32")
        self.shards.append(tokens)

    def _write_rows(self, rows: list[list[int]]) -> None:
        self.index.write(np.asarray(rows, dtype=INDEX_DTYPE).tobytes())

    def close(self) -> None:
        if self.token_fields is None:
            self.index.close()
            raise ValueError("no features to write")
        self._flush()
        self.index.close()
        meta = {"format": FORMAT, "examples": self.examples, "tokens": int(sum(self.shards)), "shards": self.shards,
                "token_fields": self.token_fields, "scalar_fields": self.scalar_fields}
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=1))


def _fields(feature: dict[str, Any]) -> list[str]:
    """Stored keys: all but private ("_where") and None-valued ones."""
    return [k for k, v in feature.items() if not k.startswith("_") and v is not None]


class TokenShards(Sequence):
    """Read-only, memory-mapped view of a :func:`write_token_shards` folder.

    ``shards[i]`` -> ``{"input_ids": list[int], <other per-token fields>: list[int], <scalars>: int}``
    (negative ``i`` counts from the end). Files are mapped lazily on first access, so the object
    pickles cheaply (it holds only the folder path and the meta data).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(meta_path)
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{self.folder}: not a token-shard folder ({self.meta.get('format')!r})")
        self._index: np.ndarray | None = None
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.meta["examples"])

    @property
    def index(self) -> np.ndarray:
        """(examples, 3 + scalars) int64 memmap: shard, offset, length, scalar fields."""
        if self._index is None:
            width = 3 + len(self.meta["scalar_fields"])
            self._index = np.memmap(self.folder / "index.i64", dtype=INDEX_DTYPE, mode="r").reshape(-1, width)
        return self._index

    def lengths(self) -> np.ndarray:
        """Token count of every example (memmap column; for length-aware batching or packing)."""
        return self.index[:, 2]

    def _tokens(self, shard: int, key: str) -> np.ndarray:
        if (shard, key) not in self._maps:
            path = self.folder / f"{shard:05d}.{key}.i32"
            self._maps[(shard, key)] = np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
        return self._maps[(shard, key)]

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        shard, start, length, *scalars = (int(v) for v in self.index[i])
        out: dict[str, Any] = {k: self._tokens(shard, k)[start : start + length].tolist() for k in self.meta["token_fields"]}
        out.update(zip(self.meta["scalar_fields"], scalars))
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "meta": self.meta}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.folder, self.meta, self._index, self._maps = state["folder"], state["meta"], None, {}
