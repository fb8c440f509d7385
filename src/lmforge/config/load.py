"""Read a YAML run config, apply dotted overrides, validate, and explain every error by field path."""

from __future__ import annotations

import re
import types
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
    return parse_config(read_config(path, overrides), source=str(path))


def read_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw mapping of ``path`` (YAML) with ``overrides`` applied and the default run name; not validated."""
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", where=str(path), hint="pass the path to a YAML run config")
    return with_default_run_name(apply_overrides(read_yaml(path), overrides), path)


def with_default_run_name(raw: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``raw`` with ``run.name`` set to the config file's name (``sentiment.yaml`` -> ``runs/sentiment``) when the
    config names neither a run nor its folder, so two configs without names do not share ``runs/run``. A stem
    that is not a plain name (``.hidden.yaml``) leaves the schema's default."""
    run = raw.get("run")
    if run is not None and not isinstance(run, dict):
        return raw  # the schema reports it
    if (run or {}).get("name") is not None or (run or {}).get("output_dir") is not None:
        return raw
    stem = Path(path).stem
    if not stem or stem.startswith((".", "~")) or any(ord(c) < 32 for c in stem):
        return raw
    return {**raw, "run": {**(run or {}), "name": stem}}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in YAML file ``path`` ({} when empty). UserError naming ``file:line`` for text that is
    not UTF-8, invalid YAML, a key written twice in one mapping, or a top level that is not a mapping."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=str(path)) from None
    except _DuplicateKey as exc:
        lines = f"lines {exc.first} and {exc.second}" if exc.first != exc.second else f"both on line {exc.first}"
        raise UserError(f"key '{exc.key}' is written twice in one mapping ({lines}); "
                        "YAML would silently keep only the second", where=f"{path}:{exc.second}",
                        hint="merge the two into one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"invalid YAML: {problem}", where=where) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError("the top level must be a mapping of sections (model, data, ...)", where=str(path))
    return raw


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, second: int):
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _StrictLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing a key written twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: construct_mapping reports it
                    pass
        return super().construct_mapping(node, deep=deep)


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
        node[parts[-1]] = _override_value(item, key.strip(), value)
    return raw


def _override_value(item: str, key: str, value: str) -> Any:
    """The YAML value of one ``key=value`` override (None for an empty value); UserError naming the setting."""
    if value == "":
        return None
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"override '{item}': the value of {key} is not valid YAML ({problem})",
                        where=f"command line: {key}",
                        hint="quote the value if it is text, e.g. key='[text'; lists are written [1, 2]") from None


def parse_config(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, RunConfig), where=source) from None


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: ``field.path: what is wrong [; did you mean 'x'?]``.

    Union fields (``data.train``: a path, a source, or a list of sources) make pydantic report one
    error per alternative, tagged with the alternative's type name; the tags are dropped from the
    path, and an alternative that only says "not a list" / "not a mapping" is left out when another
    alternative names what is wrong inside the value.
    """
    errors = [(_untagged(root, err["loc"]), err) for err in exc.errors()]
    lines: list[str] = []
    expected: dict[str, list[str]] = {}  # field -> what each union member wanted (value of the wrong type)
    got: dict[str, Any] = {}
    for (loc, tagged_leaf), err in errors:
        if tagged_leaf and err["type"].endswith("_type"):
            if not _has_deeper(errors, loc):  # else it is "not a list" beside the real problem inside the mapping
                field = ".".join(loc)
                if field not in expected:
                    lines.append(field)  # filled in below
                expected.setdefault(field, []).append(str(err["msg"]).removeprefix("Input should be "))
                got[field] = err.get("input")
            continue
        line = _error_line(root, loc, err)
        if line not in lines:
            lines.append(line)
    lines = [f"{line}: expected {' or '.join(expected[line])} (got {got[line]!r})" if line in expected else line
             for line in lines]
    return "invalid config:\n  " + "\n  ".join(lines)


def _has_deeper(errors: list, loc: list[str]) -> bool:
    return any(len(other) > len(loc) and other[: len(loc)] == loc for (other, _), _ in errors)


def _error_line(root: type[BaseModel], loc: list[str], err: dict) -> str:
    field = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        from lmforge.config.hints import elsewhere

        known = _known_fields(root, loc[:-1])
        # another tool's name for a key here, else a key known to live in another section (train.precision ->
        # runtime.precision), else the closest key here (a typo)
        here = ".".join(p for p in loc[:-1] if not p.isdigit())
        hint = did_you_mean(loc[-1], known, fuzzy=False) or elsewhere(loc[-1], here) or did_you_mean(loc[-1], known)
        return f"{field}: unknown key{hint}"
    if err["type"] == "missing":
        return f"{field}: required field is missing"
    if err["type"] == "value_error":
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        # A validator may name a sub-path itself ("columns.x: ..."): join it onto the field path.
        if loc and re.match(r"^([\w.]+): ", msg):
            return f"{field}.{msg}"
        return f"{field + ': ' if loc else ''}{msg}"
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{field}: {err['msg']}{shown}"


def _untagged(root: type[BaseModel], loc: tuple) -> tuple[list[str], bool]:
    """``loc`` without pydantic's union-member tags, and whether its last element was such a tag."""
    out: list[str] = []
    annotation: Any = root
    tagged_leaf = False
    for part in loc:
        tagged_leaf = False
        if isinstance(part, int) or str(part).isdigit():
            out.append(str(part))
            args = [a for a in typing.get_args(annotation) if typing.get_origin(a) is list] or [annotation]
            inner = typing.get_args(args[0]) if typing.get_origin(args[0]) is list else ()
            annotation = inner[0] if inner else annotation
            continue
        if typing.get_origin(annotation) is dict:  # a key of a free mapping (e.g. model.overrides)
            out.append(str(part))
            annotation = typing.get_args(annotation)[1]
            continue
        member = _union_member(annotation, str(part))
        if member is not None:
            annotation, tagged_leaf = member, True
            continue
        model = _model_in(annotation)
        field = model.model_fields.get(str(part)) if model else None
        annotation = field.annotation if field else None
        out.append(str(part))
    return out, tagged_leaf


def _union_member(annotation: Any, tag: str) -> Any:
    """The member of union ``annotation`` that pydantic tags ``tag`` (e.g. 'SourceConfig', 'list[SourceConfig]')."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    for member in typing.get_args(annotation):
        name = getattr(member, "__name__", None) if isinstance(member, type) else re.sub(r"[\w]+\.", "", str(member))
        if name == tag:
            return member
    return None


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
