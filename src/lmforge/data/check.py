"""Read the first records of every data source of a config and report what is wrong. Torch-free.

This is the data half of ``lmforge validate``: a missing file, an empty dataset, a column that is
not there, a format that does not fit the records (``format: chat`` on question/answer columns)
all fail here, before any model is loaded. Local files and folders and ``asset:`` datasets are
read; a hub dataset id or a ``datasets.save_to_disk`` folder is only noted (reading it needs the
``datasets`` library and, for the hub, the network).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

from lmforge.config.schema import SOURCE_KEYS, DataConfig, SourceConfig, source_list
from lmforge.data.sources import is_saved_dataset, looks_local
from lmforge.data.splits import iter_records
from lmforge.errors import UserError


def check_sources(data_cfg: DataConfig, task_sections: list[DataConfig] = (), first: int = 5) -> tuple[list[str], list[str]]:
    """``(errors, notes)`` from reading the first ``first`` records of every source (every task's too:
    ``task_sections`` holds each task's data section, in ``data.tasks`` order).

    Each error names the config field and the file:line; every source is checked, not only up to
    the first problem. Notes say which sources were not read.
    """
    errors, notes = [], []
    for field, section, source in _sources(data_cfg, task_sections):
        skipped = not_read_here(source)
        if skipped:
            notes.append(f"{field}: {source.path}: {skipped}")
            continue
        try:
            records, _files = iter_records(source, section, field)
            for _ in itertools.islice(records, first - 1):
                pass
        except UserError as exc:
            errors.append(f"{field}: {exc}")
    return errors, notes


def _sources(data_cfg: DataConfig, task_sections: list[DataConfig]) -> Iterator[tuple[str, DataConfig, SourceConfig]]:
    """``(config field, data section, source)`` for every source, tasks included."""
    sections = [("data", data_cfg)] + [(f"data.tasks.{i}", s) for i, s in enumerate(task_sections)]
    tasks = data_cfg.tasks or []
    for prefix, section in sections:
        owner = tasks[int(prefix.rsplit(".", 1)[1])] if prefix != "data" else section
        for key in SOURCE_KEYS:
            value = getattr(owner, key)
            for i, source in enumerate(source_list(value)):
                yield f"{prefix}.{key}" + (f"[{i}]" if isinstance(value, list) else ""), section, source


def not_read_here(source: SourceConfig) -> str | None:
    """Why ``source`` is not read by checks that must stay light (validate, format detection): a ``datasets`` folder
    or a hub dataset; None when it is read."""
    if source.path.startswith("asset:"):
        return None
    path = Path(source.path).expanduser()
    if path.is_dir() and is_saved_dataset(path):
        return "a datasets.save_to_disk folder: read when training (not checked here)"
    if not path.exists() and not looks_local(source.path):
        return "not a local file or folder: read from the hub when training (not checked here)"
    return None

