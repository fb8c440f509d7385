"""Tokenized corpora larger than RAM: memory-mapped shards written once, read by index.

:func:`write_token_shards` streams encoded features (any iterable, e.g. a generator that
encodes records lazily) into a folder, holding at most ``shard_tokens`` tokens in memory;
:class:`TokenShards` reads them back through ``numpy.memmap``, so only the pages of the examples
being touched are resident. ``TokenShards`` is a plain sequence (``len`` + ``[i]``): the training
loop consumes it in place of a list of features.

Folder layout (int32 token ids / labels, int64 index; little-endian, native numpy raw files):
  meta.json               format version, field names, example / token counts, shard sizes
  index.i64               (examples, 3 + scalars + 2 x ragged) rows: shard, start offset, length,
                          scalar fields, then (offset, count) of each ragged field
  <shard>.<field>.i32     the concatenated values of one per-token or ragged field
Per-token fields are list values as long as ``input_ids``; ragged fields are int lists of any
length (e.g. a packed row's example ``lengths``); scalar fields are ints (e.g. the class
``label``). The folder appears whole or not at all (:func:`lmforge.atomic.atomic_dir`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.atomic import atomic_dir

FORMAT = "lmforge-token-shards/1"
TOKEN_DTYPE, INDEX_DTYPE = np.int32, np.int64


def write_token_shards(features: Iterable[dict[str, Any]], folder: str | Path, shard_tokens: int = 1 << 24,
                       ragged: tuple[str, ...] = (), extra_meta: dict[str, Any] | None = None) -> Path:
    """Write ``features`` (dicts with ``input_ids`` and more per-token or int fields) as shards.

    Memory: one buffer of ``shard_tokens`` tokens per per-token field plus one index row per
    example of the current shard (an example longer than ``shard_tokens`` gets a shard alone).
    The field names are taken from the first feature; every feature must have the same ones.
    ``ragged``: list fields of any length (a list field whose length differs from ``input_ids``
    in the first feature is ragged too). ``extra_meta`` is stored in meta.json (e.g. a data
    fingerprint). Returns ``folder``. Raises ValueError on an empty iterable or mismatched fields.
    """
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
    with atomic_dir(folder) as tmp:
        writer = _ShardWriter(tmp, shard_tokens, ragged)
        for feature in features:
            writer.add(feature)
        writer.close(extra_meta or {})
    return Path(folder)


class _ShardWriter:
    """Buffers features up to ``shard_tokens`` tokens, then writes one shard and its index rows."""

    def __init__(self, folder: Path, shard_tokens: int, ragged: tuple[str, ...] = ()):
        self.folder, self.capacity, self.ragged_names = folder, shard_tokens, tuple(ragged)
        self.token_fields: list[str] | None = None
        self.scalar_fields: list[str] = []
        self.shards: list[int] = []
        self.examples = 0
        self.index = (folder / "index.i64").open("wb")

    def _start(self, feature: dict[str, Any]) -> None:
        length = len(feature["input_ids"])
        fields = _fields(feature)
        lists = [k for k in fields if isinstance(feature[k], (list, tuple, np.ndarray))]
        self.ragged_fields = [k for k in lists if k in self.ragged_names or len(feature[k]) != length]
        self.token_fields = [k for k in lists if k not in self.ragged_fields]
        self.scalar_fields = [k for k in fields if isinstance(feature[k], (int, np.integer))
                              and not isinstance(feature[k], bool)]
        self.buffers = {k: np.empty(self.capacity, dtype=TOKEN_DTYPE) for k in self.token_fields}
        self.used, self.rows = 0, []
        self.ragged_values: dict[str, list[int]] = {k: [] for k in self.ragged_fields}

    def add(self, feature: dict[str, Any]) -> None:
        if self.token_fields is None:
            self._start(feature)
        length = len(feature["input_ids"])
        if length == 0:
            raise ValueError(f"feature {self.examples} has no tokens")
        expected = self.token_fields + self.scalar_fields + self.ragged_fields
        if set(expected) != set(_fields(feature)):
            raise ValueError(f"feature {self.examples} has fields {sorted(feature)}, expected {sorted(expected)}")
        if self.used + length > self.capacity and self.used > 0:
            self._flush()
        if length > self.capacity:  # too long for a buffer: a shard of its own
            ragged = self._ragged(feature)
            self._write_shard({k: np.asarray(feature[k], dtype=TOKEN_DTYPE) for k in self.token_fields}, length)
            self._write_rows([[len(self.shards) - 1, 0, length, *self._scalars(feature), *ragged]])
            self._flush_ragged(len(self.shards) - 1)
            self.examples += 1
            return
        for key in self.token_fields:
            if len(feature[key]) != length:
                raise ValueError(f"feature {self.examples}: '{key}' has {len(feature[key])} values, input_ids {length}")
            self.buffers[key][self.used : self.used + length] = feature[key]
        self.rows.append([len(self.shards), self.used, length, *self._scalars(feature), *self._ragged(feature)])
        self.used += length
        self.examples += 1

    def _scalars(self, feature: dict[str, Any]) -> list[int]:
        return [int(feature[k]) for k in self.scalar_fields]

    def _ragged(self, feature: dict[str, Any]) -> list[int]:
        """Buffer the ragged values; return (offset, count) per ragged field for the index row."""
        cells: list[int] = []
        for key in self.ragged_fields:
            values = self.ragged_values[key]
            cells += [len(values), len(feature[key])]
            values.extend(int(v) for v in feature[key])
        return cells

    def _flush_ragged(self, shard: int) -> None:
        for key, values in self.ragged_values.items():
            np.asarray(values, dtype=TOKEN_DTYPE).tofile(self.folder / f"{shard:05d}.{key}.i32")
            values.clear()

    def _flush(self) -> None:
        if self.rows:
            self._write_shard({k: b[: self.used] for k, b in self.buffers.items()}, self.used)
            self._write_rows(self.rows)
            self._flush_ragged(len(self.shards) - 1)
        self.used, self.rows = 0, []

    def _write_shard(self, arrays: dict[str, np.ndarray], tokens: int) -> None:
        name = f"{len(self.shards):05d}"
        for key, values in arrays.items():
            values.astype(TOKEN_DTYPE, copy=False).tofile(self.folder / f"{name}.{key}.i32")
        self.shards.append(tokens)

    def _write_rows(self, rows: list[list[int]]) -> None:
        self.index.write(np.asarray(rows, dtype=INDEX_DTYPE).tobytes())

    def close(self, extra_meta: dict[str, Any]) -> None:
        if self.token_fields is None:
            self.index.close()
            raise ValueError("no features to write")
        self._flush()
        self.index.close()
        meta = {**extra_meta, "format": FORMAT, "examples": self.examples, "tokens": int(sum(self.shards)),
                "shards": self.shards, "token_fields": self.token_fields, "scalar_fields": self.scalar_fields,
                "ragged_fields": self.ragged_fields}
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
            width = 3 + len(self.meta["scalar_fields"]) + 2 * len(self.meta.get("ragged_fields", []))
            self._index = np.memmap(self.folder / "index.i64", dtype=INDEX_DTYPE, mode="r").reshape(-1, width)
        return self._index

    def lengths(self) -> np.ndarray:
        """Token count of every example (memmap column; for length-aware batching or packing)."""
        return self.index[:, 2]

    def _tokens(self, shard: int, key: str) -> np.ndarray:
        if (shard, key) not in self._maps:
            path = self.folder / f"{shard:05d}.{key}.i32"
            empty = path.stat().st_size == 0  # a ragged field with no values in this shard
            self._maps[(shard, key)] = np.empty(0, TOKEN_DTYPE) if empty else np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
        return self._maps[(shard, key)]

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        shard, start, length, *rest = (int(v) for v in self.index[i])
        out: dict[str, Any] = {k: self._tokens(shard, k)[start : start + length].tolist() for k in self.meta["token_fields"]}
        n_scalars = len(self.meta["scalar_fields"])
        out.update(zip(self.meta["scalar_fields"], rest[:n_scalars]))
        cells = rest[n_scalars:]
        for j, key in enumerate(self.meta.get("ragged_fields", [])):
            offset, count = cells[2 * j], cells[2 * j + 1]
            out[key] = self._tokens(shard, key)[offset : offset + count].tolist()
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "meta": self.meta}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.folder, self.meta, self._index, self._maps = state["folder"], state["meta"], None, {}


def encode_to_shards(records: Sequence[dict], encode: Callable[[list[dict]], list[dict]], folder: str | Path, *,
                     key: dict[str, Any], pack_length: int | None = None, block: int = 2048,
                     shard_tokens: int = 1 << 24, write: bool = True, wait_s: float = 3600.0) -> TokenShards:
    """Training features of ``records`` as memory-mapped shards in ``folder``, written once.

    ``encode(list of records) -> list of features`` runs on ``block`` records at a time, so at
    most one block of python features exists at once (records themselves are the caller's).
    ``pack_length``: pack each block's features into rows of up to that many tokens
    (:func:`lmforge.data.packing.pack_features`; best-fit within a block). ``key``: what the
    features depend on besides the records (data config, tokenizer, objective); with the
    records it makes the fingerprint kept in meta.json. A folder holding shards of the same
    fingerprint is reused without encoding; shards of another fingerprint are replaced. A
    folder that exists but holds no lmforge shards raises ValueError (user files are never
    replaced). ``write=False`` (the other processes of a multi-process run) waits up to
    ``wait_s`` seconds for the writing process's shards instead of writing (TimeoutError).
    Returns the :class:`TokenShards` (empty encodings raise ValueError).
    """
    folder = Path(folder)
    fingerprint = features_fingerprint(records, key)
    if not write:
        return _wait_for(folder, fingerprint, wait_s)
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("format") == FORMAT and meta.get("fingerprint") == fingerprint:
            return TokenShards(folder)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder} exists and is not a token-shard folder")
    elif folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} exists and is not a token-shard folder")
    ragged = ("lengths", "indices") if pack_length else ()
    write_token_shards(_encoded(records, encode, pack_length, block), folder, shard_tokens, ragged=ragged,
                       extra_meta={"fingerprint": fingerprint})
    return TokenShards(folder)


def _wait_for(folder: Path, fingerprint: str, wait_s: float) -> TokenShards:
    import time

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("fingerprint") == fingerprint:
            return TokenShards(folder)
        time.sleep(0.5)
    raise TimeoutError(f"no token shards with this data's fingerprint appeared in {folder}")


def _encoded(records: Sequence[dict], encode: Callable, pack_length: int | None, block: int) -> Iterator[dict]:
    from lmforge.data.packing import pack_features

    for start in range(0, len(records), block):
        features = list(encode(list(records[start : start + block])))
        yield from pack_features(features, pack_length) if pack_length and features else features


def features_fingerprint(records: Iterable[dict], key: dict[str, Any]) -> str:
    """sha256 over ``key`` (JSON, sorted keys) and every record (JSON) in order."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, default=str).encode())
    return digest.hexdigest()
