"""Which strings of a canonical record are text, and how to read and rewrite them.

Canonical records (see ``lmforge.data``) by format: text ``{"text"}``; instruction
``{"instruction", "input", "output", "system"}``; chat ``{"messages": [{"role", "content"}]}``;
classification ``{"text", "text_pair", "label"}``; preference ``{"prompt", "chosen", "rejected"}``.
Keys starting with ``_`` (``_where``, ``_source``) are provenance, never text.
"""

from __future__ import annotations

from typing import Callable

from lmforge.errors import UserError

TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "instruction": ("system", "instruction", "input", "output"),
    "chat": ("messages",),
    "classification": ("text", "text_pair"),
    "preference": ("prompt", "chosen", "rejected"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "instruction": ("instruction", "output"),
    "chat": ("messages",),
    "classification": ("text", "label"),
    "preference": ("prompt", "chosen", "rejected"),
}


def where(record: dict) -> str:
    """The record's ``file:line`` (or ``"?"``)."""
    return str(record.get("_where", "?"))


def check_record(record: dict, data_format: str) -> None:
    """Raise UserError naming the record when a required field is missing or not a string."""
    if data_format not in TEXT_FIELDS:
        raise UserError(f"unknown data format '{data_format}'", hint=f"one of {', '.join(TEXT_FIELDS)}")
    for name in REQUIRED[data_format]:
        value = record.get(name)
        if name == "messages":
            ok = isinstance(value, list) and all(
                isinstance(m, dict) and isinstance(m.get("content"), str) and "role" in m for m in value
            )
        else:
            ok = isinstance(value, str)
        if not ok:
            raise UserError(
                f"record has no usable '{name}' field for format '{data_format}' "
                f"(fields: {', '.join(k for k in record if not k.startswith('_'))})",
                where=where(record),
                hint="check data.format and data.columns",
            )


def text_fields(data_format: str, only: list[str] | None = None) -> tuple[str, ...]:
    """Text field names of ``data_format``, restricted to ``only`` when given."""
    names = TEXT_FIELDS[data_format]
    return tuple(n for n in names if only is None or n in only or (n == "messages" and "content" in only))


def map_text(record: dict, data_format: str, fn: Callable[[str], str], only: list[str] | None = None) -> dict:
    """A copy of ``record`` with ``fn`` applied to each text string (chat: each message content)."""
    out = dict(record)
    for name in text_fields(data_format, only):
        value = record.get(name)
        if name == "messages" and isinstance(value, list):
            out[name] = [dict(m, content=fn(m["content"])) for m in value]
        elif isinstance(value, str):
            out[name] = fn(value)
    return out


def strings(record: dict, data_format: str) -> list[str]:
    """All text strings of the record, in field order (chat: message contents)."""
    found: list[str] = []
    for name in TEXT_FIELDS[data_format]:
        value = record.get(name)
        if name == "messages" and isinstance(value, list):
            found.extend(m.get("content", "") for m in value)
        elif isinstance(value, str):
            found.append(value)
    return found


def joined_text(record: dict, data_format: str) -> str:
    """The record's text strings joined by newlines: what length, dedup and repetition look at."""
    return "\n".join(s for s in strings(record, data_format) if s)


def content_text(record: dict, data_format: str) -> str:
    """:func:`joined_text` without system prompts: what deduplication compares.

    A system prompt shared by every record would otherwise make short examples look alike.
    """
    if data_format == "chat":
        return "\n".join(m.get("content", "") for m in record.get("messages", []) if m.get("role") != "system")
    if data_format == "instruction":
        return "\n".join(record.get(k) or "" for k in ("instruction", "input", "output"))
    return joined_text(record, data_format)
