"""``data.format`` left out: the format the first record of the training data fits. Torch-free.

Each format names the column sets that identify it (``FormatSpec.detect``: ``messages`` or ``conversations`` is
chat, ``prompt`` + ``chosen`` + ``rejected`` preference, ``text`` + ``label`` classification, the well-known
``question`` + ``answer`` instruction ...); the most specific set the first row holds wins, among the formats the
config's objective trains on when it names one. Plain-text files are ``text``. Column names that differ from a
field only in case (a spreadsheet's ``Text`` / ``Label``) count; they and the well-known names are mapped in
``data.columns``. A row no format fits, or two fit equally, is an error asking for ``data.format``: detection
never guesses between formats. ``datasets`` folders and hub datasets are not read for this (validate does not
read them either); they need ``data.format``.
"""

from __future__ import annotations

import itertools
from typing import Mapping

from lmforge.config.schema import SourceConfig
from lmforge.data.formats import FORMATS, detect_format, detect_help, formats_of
from lmforge.data.check import not_read_here
from lmforge.data.sources import TEXT_SUFFIXES, local_files, stream_source
from lmforge.errors import UserError


def source_format(source: SourceConfig, columns: Mapping[str, str], field: str = "data.format",
                  kinds: tuple[str, ...] | None = None) -> tuple[str, str, dict[str, str]]:
    """``(format, why, columns to add)`` for ``source`` (``why``: ``chats.jsonl:1 has messages``; the columns: the
    format's fields found under another case or a well-known other name, ``{"text": "Text"}``); UserError naming
    ``field`` and the file when the format cannot be told from the data. ``kinds``: the format kinds the config's
    objective trains on."""
    if not_read_here(source):
        raise UserError(f"not set, and {source.path} is a datasets folder or hub dataset, which is not read to "
                        "find the format", where=field, hint=_hint())
    files = local_files(source.path, text_format=True)
    if files and all(f.suffix.lower() in TEXT_SUFFIXES for f in files) and (kinds is None or "text" in kinds):
        return "text", f"{files[0].name} is plain text", {}
    rows, _files = stream_source(source, text_format=False)
    first = next(itertools.islice(rows, 1), None)
    if first is None:
        raise UserError(f"not set, and {source.path} holds no records to find it from", where=field, hint=_hint())
    row, where = first
    folded = {str(k).casefold(): k for k in row if str(k).casefold() not in row and str(k).casefold() not in columns}
    fits = detect_format({**row, **{low: row[k] for low, k in folded.items()}}, columns, kinds)
    present = ", ".join(map(str, row)) or "(none)"
    if not fits:
        trains = f" the objective trains on ({', '.join(formats_of(kinds))})" if kinds is not None else ""
        raise UserError(f"not set, and {where} (columns: {present}) fits no format{trains} by its column names",
                        where=field, hint=_hint() + "; and map your columns to its fields, e.g. data.format: "
                        "classification with data.columns: {text: review, label: score}")
    if len(fits) > 1:
        named = " and ".join(f"{name} ({', '.join(found)})" for name, found in fits)
        raise UserError(f"not set, and {where} fits {named} equally", where=field, hint=_hint())
    name, found = fits[0]
    real = {column: str(folded.get(column, column)) for column in found}  # the row's own spelling
    added = {f: str(folded[f]) for f in FORMATS[name].fields if f in folded and f not in columns}
    added.update({f: real[column] for column, f in found.items()  # well-known other names (question -> instruction)
                  if real[column] != f and f not in columns})
    return name, f"{where} has {', '.join(real.values())}", added


def _hint() -> str:
    return f"set data.format to one of: {detect_help()}"
