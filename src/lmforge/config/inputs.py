"""The local files and folders a run config reads, and the setting that chose its run folder. Torch-free.

Used to keep every output folder apart from the inputs (:mod:`lmforge.outputs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from lmforge.config.schema import SOURCE_KEYS, RunConfig, source_list


def input_paths(config: RunConfig) -> list[Path]:
    """Existing local paths ``config`` reads: data sources (every task's too), a local model folder or
    file, the forgetting set, ``data.prepare.pii.terms`` files, and any method / objective parameter naming a local path (a reward
    model folder, a ``file.py:function`` reward). ``asset:`` names and hub ids are not local."""
    data = config.data
    raw = [s.path for key in SOURCE_KEYS for s in source_list(getattr(data, key))]
    raw += [s.path for task in data.tasks or [] for key in SOURCE_KEYS for s in source_list(getattr(task, key))]
    raw += [config.model.name, config.eval.forgetting or ""]
    if data.prepare is not None:  # the user's lists of terms to redact
        raw += [value for value in data.prepare.pii.terms.values() if isinstance(value, str)]
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
        elif not path.exists() and any(ch in value for ch in "*?["):  # a data pattern: the files it matches
            import glob

            found += [p for p in map(Path, sorted(glob.glob(str(path), recursive=True))) if p not in found]
    return found


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
