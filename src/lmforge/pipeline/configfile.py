"""A run config file as the commands read it: :mod:`lmforge.config.load`'s steps (YAML, overrides, default run
name), then what the data decides when the config leaves it out: ``data.format`` (and each task's format) told
from the training data (:mod:`lmforge.data.detect`), and ``model.name`` picked for the task (the built-in encoder
for classification, the built-in causal LM otherwise). The config package cannot read data (it is upstream of
it), so this step lives here. What is filled in is written into the config like any other value: the run's
config.yaml records it, and each is said.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from lmforge.config.load import parse_config, read_config
from lmforge.config.schema import RunConfig, SourceConfig
from lmforge.errors import UserError


def load_run_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                    say: Callable[[str], None] | None = None) -> RunConfig:
    """The validated config of ``path`` + ``overrides``; a format told from the data or a model picked for the task
    is said (UserError when the format cannot be told: the row's columns and what identifies each format).
    ``say`` defaults to printing on the main process only (``train --nproc N`` starts N of them)."""
    from lmforge.train.distributed import is_main_process

    raw, notes = with_data_defaults(read_config(path, overrides))
    for note in notes:
        (say or (print if is_main_process() else (lambda _line: None)))(note)
    return parse_config(raw, source=str(path))


def with_data_defaults(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``raw`` with the formats told from the data and the model picked for the task where the config gives none
    (:func:`with_detected_formats`, :func:`with_default_model`), and a note per value filled in."""
    raw, notes = with_detected_formats(raw)
    raw, picked = with_default_model(raw)
    return raw, notes + picked


def with_default_model(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``raw`` with ``model.name`` set when the config names no model: the built-in encoder when the objective is
    classification, else the built-in causal LM (both run on a laptop CPU; offline, nothing else is at hand).
    Multi-task configs and formats not known yet are left for the schema to report."""
    from lmforge.data.formats import FORMATS
    from lmforge.model.source import MINILM, SMOLLM2, UPSTREAM

    model, data, objective = raw.get("model"), raw.get("data"), raw.get("objective")
    if not (model is None or (isinstance(model, dict) and model.get("name") is None)) or not isinstance(data, dict):
        return raw, []
    fmt = data.get("format")
    if data.get("tasks") is not None or fmt not in FORMATS:
        return raw, []
    name = objective.get("name") if isinstance(objective, dict) else None
    name = name or FORMATS[fmt].default_objective
    pick, kind = (MINILM, "encoder") if name == "classification" else (SMOLLM2, "causal LM")
    return ({**raw, "model": {**(model or {}), "name": pick}},
            [f"model.name: {pick}, picked for {fmt} data with objective {name} (the built-in {kind}, "
             f"{UPSTREAM[pick]}); set model.name to choose another: a local folder, a .gguf file or a hub id "
             "(lmforge estimate says what fits this machine)"])


def with_detected_formats(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``raw`` with ``data.format`` (or each ``data.tasks[i].format``) filled in from the data where the config
    gives none, and a note per format filled in. Values the schema will refuse are left for it to report."""
    data = raw.get("data")
    if not isinstance(data, dict) or data.get("format") is not None:
        return raw, []
    columns = data.get("columns") if isinstance(data.get("columns"), dict) else {}
    kinds = _objective_kinds(raw.get("objective"))
    tasks = data.get("tasks")
    if isinstance(tasks, list):
        filled, notes = [], []
        for i, task in enumerate(tasks):
            if isinstance(task, dict) and task.get("format") is None and task.get("train") is not None:
                own = task.get("columns") if isinstance(task.get("columns"), dict) else None
                found = _detect(task["train"], columns if own is None else own, f"data.tasks.{i}.format", kinds)
                if found:
                    fmt, why, added = found
                    task = {**task, "format": fmt, **({"columns": {**(own or columns), **added}} if added else {})}
                    notes.append(f"data.tasks.{i}.format: {fmt}, told from the data ({why}{_mapped(added)})")
            filled.append(task)
        return {**raw, "data": {**data, "tasks": filled}}, notes
    if tasks is not None or data.get("train") is None:
        return raw, []
    found = _detect(data["train"], columns, "data.format", kinds)
    if not found:
        return raw, []
    fmt, why, added = found
    return ({**raw, "data": {**data, "format": fmt, **({"columns": {**columns, **added}} if added else {})}},
            [f"data.format: {fmt}, told from the data ({why}{_mapped(added)}); set data.format to choose another"])


def _mapped(added: dict[str, str]) -> str:
    return f"; read as data.columns {{{', '.join(f'{k}: {v}' for k, v in added.items())}}}" if added else ""


def _objective_kinds(objective: Any) -> tuple[str, ...] | None:
    """The data kinds of the objective the config names (None: none named, or not one the registry knows)."""
    from lmforge.objectives.registry import get_objective_spec

    name = objective.get("name") if isinstance(objective, dict) else None
    if not isinstance(name, str):
        return None
    try:
        return get_objective_spec(name).kinds
    except UserError:  # an unknown name: the plan reports it with a did-you-mean
        return None


def _detect(train: Any, columns: dict, field: str,
            kinds: tuple[str, ...] | None = None) -> tuple[str, str, dict[str, str]] | None:
    """``(format, why, columns to add)`` from the first source of ``train``; None when the source is not valid
    (the schema reports it). Columns found in another case are added only for a single source without its own
    ``columns`` (another source of the list may name them as the fields are spelt)."""
    from lmforge.data.detect import source_format

    first = train[0] if isinstance(train, list) and train else train
    try:
        source = SourceConfig.model_validate({"path": first} if isinstance(first, str) else first)
    except ValidationError:
        return None
    if source.format is not None:
        return source.format, f"the format of {source.path}", {}
    fmt, why, added = source_format(source, columns if source.columns is None else source.columns, field, kinds)
    single = not isinstance(train, list) or len(train) == 1
    return fmt, why, added if single and source.columns is None else {}
