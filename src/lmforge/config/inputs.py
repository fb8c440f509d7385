"""The local files and folders a run config reads, and the setting that chose its run folder. Torch-free.

Used to keep every output folder apart from the inputs (:mod:`lmforge.outputs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from lmforge.config.schema import SOURCE_KEYS, RunConfig, source_list


def input_paths(config: RunConfig) -> list[Path]:
    """Existing local paths ``config`` reads: data sources (every task's too; a pattern's matches), a local model
    folder or file, the forgetting set, ``data.prepare.pii.terms`` files, and any method / objective parameter
    naming a local path (a reward model folder, a ``file.py:function`` reward). ``asset:`` names and hub ids are
    not local."""
    raw = [path for path, _format in data_sources(config)] + terms_files(config)
    raw += [config.model.name, config.eval.forgetting or ""]
    raw += list(_strings(config.method.params)) + list(_strings(config.objective.params if config.objective else {}))
    found = []
    for value in raw:
        if not value or value.startswith("asset:"):
            continue
        head, sep, tail = value.rpartition(":")
        if sep and head.endswith(".py") and tail.isidentifier():  # a reward function: file.py:function
            value = head
        path = Path(value).expanduser()
        if path.exists() and path not in found:
            found.append(path)
        elif not path.exists() and is_pattern(value):
            found += [p for p in pattern_matches(value) if p not in found]
    return found


def data_sources(config: RunConfig) -> Iterator[tuple[str, str]]:
    """(path as written, data format) of every data source of ``config``, every task's too, in order."""
    data = config.data
    for key in SOURCE_KEYS:
        yield from ((s.path, data.format) for s in source_list(getattr(data, key)))
    for task in data.tasks or []:
        for key in SOURCE_KEYS:
            yield from ((s.path, task.format or data.format) for s in source_list(getattr(task, key)))


def terms_files(config: RunConfig) -> list[str]:
    """The ``data.prepare.pii.terms`` entries that name a file (the user's lists of terms to redact)."""
    prepare = config.data.prepare
    return [value for value in prepare.pii.terms.values() if isinstance(value, str)] if prepare is not None else []


def is_pattern(raw: str) -> bool:
    """A path with a shell pattern (``data/*.jsonl``, ``logs/**/*.csv``, ``part-[0-9].parquet``)."""
    return not raw.startswith("asset:") and any(ch in raw for ch in "*?[")


def pattern_matches(raw: str) -> list[Path]:
    """What the shell pattern ``raw`` matches (``**`` spans folders), sorted."""
    import glob

    return sorted(Path(p) for p in glob.glob(str(Path(raw).expanduser()), recursive=True))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def run_dir_setting(config: RunConfig) -> str:
    """The setting that chose the run folder, for error messages: run.output_dir, else run.name."""
    return "run.output_dir" if config.run.output_dir else "run.name"
