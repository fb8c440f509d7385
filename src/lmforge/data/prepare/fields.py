"""Which strings of a canonical record are text, and how to read and rewrite them.

Each format's spec (:mod:`lmforge.data.formats`) names its required and text fields; a field holding
a list of messages (``[{"role", "content"}]``) contributes each message's content. Keys starting with ``_`` (``_where``, ``_source``) are provenance, never text.
"""

from __future__ import annotations

from typing import Callable

from lmforge.data.formats import get_format
from lmforge.errors import UserError

def where(record: dict) -> str:
    """The record's ``file:line`` (or ``"?"``)."""
    return str(record.get("_where", "?"))


def check_record(record: dict, data_format: str) -> None:
    """Raise UserError naming the record when a required field is missing or not a string."""
    for name in get_format(data_format).required:
        value = record.get(name)
        if isinstance(value, list):  # a list of messages
            ok = all(
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
    names = get_format(data_format).text_fields
    return tuple(n for n in names if only is None or n in only or (n == "messages" and "content" in only))


def map_text(record: dict, data_format: str, fn: Callable[[str], str], only: list[str] | None = None) -> dict:
    """A copy of ``record`` with ``fn`` applied to each text string (chat: each message content)."""
    out = dict(record)
    for name in text_fields(data_format, only):
        value = record.get(name)
        if isinstance(value, list):  # messages
            out[name] = [dict(m, content=fn(m["content"])) for m in value]
        elif isinstance(value, str):
            out[name] = fn(value)
    return out


def strings(record: dict, data_format: str) -> list[str]:
    """All text strings of the record, in field order (a list of messages: their contents)."""
    return get_format(data_format).strings(record)


def joined_text(record: dict, data_format: str) -> str:
    """The record's text strings joined by newlines: what length, dedup and repetition look at."""
    return "\n".join(s for s in strings(record, data_format) if s)


def content_text(record: dict, data_format: str) -> str:
    """:func:`joined_text` without system prompts (the format's ``content_fields``): what deduplication compares.

    A system prompt shared by every record would otherwise make short examples look alike.
    """
    spec = get_format(data_format)
    if spec.content_fields is not None:
        return "\n".join(record.get(k) or "" for k in spec.content_fields)
    return "\n".join(s for s in spec.strings(record, skip_roles=("system",)) if s)
