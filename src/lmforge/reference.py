"""Generate the config reference (docs/config.md) from the schema and the registries (docs stay true).

`python -m lmforge.reference` prints it; `python -m lmforge.reference --write docs/config.md` rewrites the
marked block of that file; a test checks docs/config.md holds exactly this text.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from lmforge.config.schema import ChoiceConfig, RunConfig


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", "") for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        return f"list[{', '.join(_type_name(a) for a in typing.get_args(annotation))}]"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if isinstance(field.json_schema_extra, dict) and "default_doc" in field.json_schema_extra:
        return str(field.json_schema_extra["default_doc"])  # filled in before validation (e.g. data.format)
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.default_factory() if field.default_factory else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{value!r}`" if value not in (None, {}, []) else f"`{value}`" if value is not None else "`null`"


def section_table(model: type[BaseModel], prefix: str) -> list[str]:
    rows = [f"| `{prefix}.{name}` | {_type_name(f.annotation)} | {_default(f)} | {f.description or ''} |"
            for name, f in model.model_fields.items() if not _is_section(f.annotation)]
    for name, f in model.model_fields.items():
        sub = _is_section(f.annotation) or _section_or_list(f.annotation)
        if sub:
            rows += section_table(sub, f"{prefix}.{name}")
    return rows


def _section_or_list(annotation: Any) -> type[BaseModel] | None:
    """X for ``X | list[X] | None`` (e.g. data.train): its keys apply to each listed item too."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    sections = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    lists = [a for a in args if typing.get_origin(a) is list]
    if len(sections) == 1 and len(lists) == 1 and typing.get_args(lists[0]) == (sections[0],) and len(args) == 2:
        return sections[0]
    return None


def _is_section(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def config_reference() -> str:
    from lmforge.methods import METHODS
    from lmforge.objectives import OBJECTIVES

    out = []
    for name, field in RunConfig.model_fields.items():
        model = _is_section(field.annotation)
        if model is None or model is ChoiceConfig:
            continue
        out += [f"### `{name}`", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        out += section_table(model, name) + [""]
    for title, registry in (("method", METHODS), ("objective", OBJECTIVES)):
        out += [f"### `{title}`", "", f"`{title}.name` picks one; the other keys are that {title}'s own parameters.",
                "", "| name | key | type | default | meaning |", "| --- | --- | --- | --- | --- |"]
        for reg_name, spec in sorted(registry.items()):
            fields = spec.params.model_fields
            if not fields:
                out.append(f"| `{reg_name}` | (none) | | | |")
            for key, f in fields.items():
                out.append(f"| `{reg_name}` | `{key}` | {_type_name(f.annotation)} | {_default(f)} | {f.description or ''} |")
        out.append("")
        if registry is METHODS:  # what train.lr means when a run leaves it unset
            out += ["`train.lr` left unset is the method's own default (measured: docs/methods.md): "
                    + ", ".join(f"`{n}` {s.default_lrs()}" for n, s in sorted(METHODS.items())) + ".", ""]
    return "\n".join(out).rstrip() + "\n"


DOC = "docs/config.md"
START = f"<!-- config-reference:start (generated: python -m lmforge.reference --write {DOC}) -->"
END = "<!-- config-reference:end -->"


def generated_section(text: str) -> str:
    """The generated block currently in a document (between the markers)."""
    start = text.index(START) + len(START)
    return text[start: text.index(END)].strip("\n") + "\n"


def write_reference(path: str) -> None:
    """Rewrite the block between the markers of ``path`` (the text around it is kept)."""
    from pathlib import Path

    from lmforge.atomic import atomic_write_text

    text = Path(path).read_text()
    head, tail = text[: text.index(START) + len(START)], text[text.index(END):]
    atomic_write_text(path, f"{head}\n{config_reference()}{tail}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_reference(sys.argv[2] if len(sys.argv) > 2 else DOC)
    else:
        print(config_reference(), end="")
