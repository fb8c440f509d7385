"""Read a YAML run config, apply dotted overrides, validate, and explain every error by field path."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lmforge.atomic import atomic_write_text
from lmforge.config.hints import did_you_mean
from lmforge.config.schema import RunConfig
from lmforge.errors import UserError


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load ``path`` (YAML), apply ``key.sub=value`` overrides, and validate.

    Raises :class:`UserError` naming the file, line or field on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", where=str(path), hint="pass the path to a YAML run config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"invalid YAML: {problem}", where=where) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError("the top level must be a mapping of sections (model, data, ...)", where=str(path))
    raw = apply_overrides(raw, overrides)
    return parse_config(raw, source=str(path))


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` set (value parsed as YAML)."""
    import copy

    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"override '{item}' is not of the form section.key=value", where="command line")
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"override '{item}': '{part}' is not a section", where="command line")
            node = child
        node[parts[-1]] = yaml.safe_load(value) if value != "" else None
    return raw


def parse_config(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, RunConfig), where=source) from None


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: ``field.path: what is wrong [; did you mean 'x'?]``."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            known = _known_fields(root, loc[:-1])
            lines.append(f"{field}: unknown key{did_you_mean(loc[-1], known)}")
        elif err["type"] == "missing":
            lines.append(f"{field}: required field is missing")
        elif err["type"] == "value_error":
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            # A validator may name a sub-path itself ("columns.x: ..."): join it onto the field path.
            sub = re.match(r"^([\w.]+): ", msg)
            if loc and sub:
                lines.append(f"{field}.{msg}")
            else:
                lines.append(f"{field + ': ' if loc else ''}{msg}")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{field}: {err['msg']}{shown}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _known_fields(model: type[BaseModel] | None, loc: list[str]) -> list[str]:
    """Field names of the model found by walking ``loc`` down from ``model``."""
    for part in loc:
        if model is None:
            return []
        if part.isdigit():  # a list item (e.g. data.tasks.0): its model is already the item's
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def save_resolved(config: RunConfig, run_dir: str | Path) -> Path:
    """Write the fully resolved config (defaults filled in) to ``run_dir/config.yaml``."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    return atomic_write_text(Path(run_dir) / "config.yaml", text)
