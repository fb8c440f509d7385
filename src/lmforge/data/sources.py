"""Read a data source (file, folder, ``datasets.save_to_disk`` folder, or hub dataset id) into raw rows.

A raw row is ``(row, where)``: ``row`` is a dict of the user's column names to values, ``where``
says where it came from (``file:line`` for JSONL / CSV / text, ``file:row N`` for JSON lists,
Parquet and datasets). Rows are mapped to canonical records by :mod:`lmforge.data.records`.

Supported files: ``.jsonl`` / ``.ndjson``, ``.json`` (a list of objects, or an object with exactly
one list field), ``.csv`` / ``.tsv`` (the delimiter read off the header line: see :func:`csv_delimiter`), ``.parquet``, and plain text ``.txt`` / ``.md`` (format ``text`` only: one record per file in a folder, one record
per blank-line-separated paragraph for a single file). A path may be a shell pattern (``data/*.jsonl``,
``logs/**/*.csv``): the matching files are read like a folder's.
Every problem a user can fix is a :class:`UserError` naming the file and line or row.

JSONL, CSV and single plain-text files are read lazily, line by line (one paragraph held at a
time), Parquet files in batches of rows; JSON lists, datasets folders, hub datasets and whole-file
texts in a folder are loaded one file at a time. ``read_source`` collects the rows into a list; ``stream_source``
yields them.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from lmforge.config.inputs import is_pattern, pattern_matches
from lmforge.config.schema import SourceConfig
from lmforge.errors import UserError

Row = tuple[dict[str, Any], str]

TEXT_SUFFIXES = (".txt", ".md")
TABLE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
SUPPORTED = TABLE_SUFFIXES + TEXT_SUFFIXES
BLANK_LINE = re.compile(r"[ \t]*")
LONE_CR = re.compile(r"(?<=\r)(?!\n)")
REENCODE_HINT = "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`"


@dataclass
class SourceRows:
    """The rows read from one source, in order, plus every data file that was read."""

    rows: list[Row] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def read_source(source: SourceConfig, *, text_format: bool, text_column: str = "text") -> SourceRows:
    """Read ``source`` into rows (at most ``source.limit``), stopping as soon as the limit is reached.

    ``text_format``: plain-text files are accepted (data.format ``text``); their content goes
    into ``text_column``. Raises UserError for anything the user can fix.
    """
    rows, files = stream_source(source, text_format=text_format, text_column=text_column)
    return SourceRows(list(rows), files)


def stream_source(
    source: SourceConfig, *, text_format: bool, text_column: str = "text"
) -> tuple[Iterator[Row], list[Path]]:
    """The rows of ``source`` (at most ``source.limit``) as a lazy iterator, and the files read.

    Nothing is read until the iterator is advanced; ``files`` grows as files are opened and is
    complete once the iterator is exhausted (or stopped by the limit). Same rows, order and
    errors as :func:`read_source`.
    """
    files: list[Path] = []
    rows = _iter_source(source, files, text_format, text_column)
    if source.limit is not None:
        rows = itertools.islice(rows, source.limit)
    return rows, files


def _iter_source(source: SourceConfig, files: list[Path], text_format: bool, text_column: str) -> Iterator[Row]:
    path = source_path(source.path)
    if is_pattern(source.path) and not path.exists():
        for file in glob_data_files(source.path, text_format):  # read like a folder's files, in sorted order
            files.append(file)
            yield from _iter_file(file, text_format, text_column, whole_file_text=True)
        return
    if path.is_dir() and is_saved_dataset(path):
        yield from _iter_saved_dataset(path, source.split, files)
    elif path.is_dir():
        found = list_data_files(path, text_format)
        for file in found:
            files.append(file)
            yield from _iter_file(file, text_format, text_column, whole_file_text=True)
    elif path.is_file():
        files.append(path)
        yield from _iter_file(path, text_format, text_column, whole_file_text=False)
    elif looks_local(source.path):
        raise UserError(
            "no such file or folder",
            where=source.path,
            hint="check the path (relative paths start at the current folder)",
        )
    else:
        yield from _iter_hub(source, files)


def source_path(raw: str) -> Path:
    """A source path as a local path; ``asset:NAME`` names an offline dataset (see data/assets.py)."""
    if raw.startswith("asset:"):
        from lmforge.data.assets import asset_path

        return asset_path(raw.removeprefix("asset:"))
    return Path(raw).expanduser()


def list_data_files(folder: Path, text_format: bool) -> list[Path]:
    """Every supported data file under ``folder`` (recursive, sorted; hidden entries skipped).

    Plain-text files count only when ``text_format``. Raises UserError if none is found.
    """
    wanted = SUPPORTED if text_format else TABLE_SUFFIXES
    found = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in wanted
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not found:
        raise UserError(
            "folder holds no data files",
            where=str(folder),
            hint=f"supported files: {', '.join(wanted)}",
        )
    return found


def local_files(raw: str, text_format: bool) -> list[Path]:
    """The local files a source path reads (a file; a folder's data files, or every file of a ``datasets``
    folder; a pattern's matches); [] for ``asset:`` datasets (pinned packages) and hub ids. Reads no rows."""
    if raw.startswith("asset:"):
        return []
    path = Path(raw).expanduser()
    if is_pattern(raw) and not path.exists():
        return glob_data_files(raw, text_format)
    if path.is_dir():
        if is_saved_dataset(path):
            return sorted(p for p in path.rglob("*") if p.is_file())
        return list_data_files(path, text_format)
    return [path] if path.is_file() else []


def glob_data_files(pattern: str, text_format: bool) -> list[Path]:
    """The supported data files matching ``pattern`` (``**`` spans folders), sorted; hidden files are skipped
    as in a folder. Raises UserError naming the pattern when nothing matches."""
    wanted = SUPPORTED if text_format else TABLE_SUFFIXES
    matched = pattern_matches(pattern)
    found = [p for p in matched if p.is_file() and p.suffix.lower() in wanted and not p.name.startswith(".")]
    if not found:
        other = [p.name for p in matched if p.is_file()][:3]
        raise UserError(
            "no data file matches this pattern" + (f" (matched, not data files: {', '.join(other)})" if other else ""),
            where=pattern,
            hint=f"check the pattern (relative paths start at the current folder); supported files: {', '.join(wanted)}",
        )
    return found


def looks_local(raw: str) -> bool:
    """A path that cannot be a hub dataset id: absolute, ./ ~ prefixed, or with a data file suffix."""
    return (
        raw.startswith((".", "/", "~", "\\"))
        or Path(raw).suffix.lower() in SUPPORTED
        or raw.count("/") > 1
    )


def _iter_file(path: Path, text_format: bool, text_column: str, whole_file_text: bool) -> Iterator[Row]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _iter_jsonl(path)
    elif suffix == ".json":
        yield from _iter_json(path)
    elif suffix in (".csv", ".tsv"):
        yield from csv_rows(path)
    elif suffix == ".parquet":
        yield from _iter_parquet(path)
    elif suffix in TEXT_SUFFIXES:
        if not text_format:
            raise UserError(
                "plain-text files hold no columns; they are read only with data.format: text",
                where=str(path),
                hint="use JSONL, JSON, CSV or Parquet for this format",
            )
        yield from _iter_text(path, text_column, whole_file_text)
    else:
        raise UserError(
            f"unsupported file type '{path.suffix or path.name}'",
            where=str(path),
            hint=(f"save the sheet as CSV UTF-8 (File > Save As) and point data.train at the .csv; "
                  if path.suffix.lower() in (".xlsx", ".xls", ".xlsm", ".ods", ".numbers") else "")
                 + f"supported: {', '.join(SUPPORTED)}",
        )


def read_text(path: Path) -> str:
    """The whole file decoded as UTF-8 (a leading BOM is dropped); UserError with the byte offset if not."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"not valid UTF-8 (byte offset {exc.start}: {exc.reason})", where=str(path), hint=REENCODE_HINT
        ) from None


def decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 file, read lazily; each line keeps its ``\\n`` (a first-line BOM is dropped).

    Lines end at ``\\n`` only (``\\r\\n`` stays inside the line). UserError naming ``file:line`` and
    the byte offset at the first byte that is not valid UTF-8.
    """
    offset = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"not valid UTF-8 (byte offset {offset + exc.start}: {exc.reason})",
                    where=f"{path}:{number}",
                    hint=REENCODE_HINT,
                ) from None
            offset += len(raw)
            yield number, line


def _iter_jsonl(path: Path) -> Iterator[Row]:
    for number, line in decoded_lines(path):
        where = f"{path}:{number}"
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"malformed JSON: {exc.msg} (column {exc.colno})",
                where=where,
                hint="each line of a .jsonl file must be one complete JSON object",
            ) from None
        if not isinstance(value, dict):
            raise UserError(f"expected a JSON object, got {type(value).__name__}", where=where)
        yield value, where


def _iter_json(path: Path) -> Iterator[Row]:
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and exc.lineno > 1 and exc.colno == 1:
            # JSON Lines under a .json name (what `datasets`' to_json writes): a second document starts a line
            yield from _iter_jsonl(path)
            return
        raise UserError(f"malformed JSON: {exc.msg} (column {exc.colno})", where=f"{path}:{exc.lineno}") from None
    if isinstance(value, dict):
        lists = [k for k, v in value.items() if isinstance(v, list)]
        if not lists and text.strip().count("\n") == 0:  # one line, one object: JSON Lines with one record
            yield value, f"{path}:1"
            return
        if len(lists) != 1:
            raise UserError(
                f"a JSON object must hold exactly one list of records (found {len(lists)}: {', '.join(lists)})",
                where=str(path),
                hint="use a top-level list of objects, or JSON Lines (.jsonl)",
            )
        value = value[lists[0]]
    if not isinstance(value, list):
        raise UserError("expected a list of JSON objects", where=str(path))
    for index, item in enumerate(value, start=1):
        where = f"{path}:row {index}"
        if not isinstance(item, dict):
            raise UserError(f"expected a JSON object, got {type(item).__name__}", where=where)
        yield item, where


def _csv_lines(path: Path) -> Iterator[str]:
    """The file's lines as ``open(newline="")`` gives them (ends at \\n, \\r\\n or a lone \\r), lazily."""
    for _, line in decoded_lines(path):
        yield from (part for part in LONE_CR.split(line) if part) if "\r" in line else (line,)


def csv_delimiter(header: str) -> str:
    """The delimiter of a CSV file, from its header line: a comma when the header has one, else the most
    frequent of tab, semicolon (spreadsheets in locales with a decimal comma) and ``|``; a comma when none.
    Quoted column names are left out of the count."""
    header = re.sub(r'"[^"]*"', "", header)  # a quoted column name may hold any delimiter
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in ("\t", ";", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def csv_rows(path: Path) -> Iterator[Row]:
    """Rows of a CSV / TSV file with a header line, read lazily; ``where`` is the row's first line."""
    lines = _csv_lines(path)
    first = next(lines, None)
    if first is None:
        return
    reader = csv.reader(itertools.chain([first], lines), delimiter=csv_delimiter(first))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise UserError(f"malformed CSV: {exc}", where=f"{path}:1") from None
    header = [h.strip() for h in header]
    start = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UserError(f"malformed CSV: {exc}", where=f"{path}:{start}") from None
        where = f"{path}:{start}"
        start = reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            raise UserError(f"{len(values)} values but the header names {len(header)} columns", where=where)
        yield {h: (values[i] if i < len(values) else None) for i, h in enumerate(header)}, where


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    index = 0
    try:
        parquet = pq.ParquetFile(path)
        named = _class_names(parquet.schema_arrow.metadata or {})
        for batch in parquet.iter_batches(batch_size=1024):  # streamed: one batch in memory at a time
            for row in batch.to_pylist():
                index += 1
                yield _with_class_names(row, named), f"{path}:row {index}"
    except UserError:
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise UserError(f"cannot read Parquet file: {exc}", where=str(path)) from None


def _iter_text(path: Path, column: str, whole_file: bool) -> Iterator[Row]:
    """One record for the whole file (``whole_file``), else one per paragraph, read lazily.

    Paragraphs are separated by a blank line (only spaces/tabs) after a line break; ``where``
    is the paragraph's first non-empty line. Only one paragraph is held at a time.
    """
    if whole_file:
        text = read_text(path).replace("\r\n", "\n")
        if text.strip():
            yield {column: text.strip("\n")}, f"{path}:1"
        return
    lines = _text_lines(path)
    block: list[str] = []
    start = number = 1
    current = next(lines, None)
    while current is not None:
        block.append(current[0])
        following = next(lines, None)
        if current[1] and following is not None and following[1] and BLANK_LINE.fullmatch(following[0]):
            yield from _paragraph(block, start, path, column)
            number += 2  # the blank line belongs to the separator
            block, start = [], number
            current = next(lines, None)
        else:
            number += 1
            current = following
    yield from _paragraph(block, start, path, column)


def _text_lines(path: Path) -> Iterator[tuple[str, bool]]:
    """``(line without its line break, whether a \\n ended it)``; \\r\\n counts as \\n."""
    for _, line in decoded_lines(path):
        if line.endswith("\n"):
            yield line[:-2] if line.endswith("\r\n") else line[:-1], True
        else:
            yield line, False


def _paragraph(block: list[str], start: int, path: Path, column: str) -> Iterator[Row]:
    text = "\n".join(block)
    if text.strip():
        lead = len(text) - len(text.lstrip("\n"))
        yield {column: text.strip("\n")}, f"{path}:{start + lead}"


def is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _iter_saved_dataset(path: Path, split: str | None, files: list[Path]) -> Iterator[Row]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # a damaged or foreign folder
        raise UserError(f"cannot read this datasets.save_to_disk folder: {exc}", where=str(path)) from None
    dataset = _pick_split(loaded, split, str(path))
    files.extend(Path(f["filename"]) for f in dataset.cache_files)
    yield from _iter_dataset(dataset, str(path))


def _pick_split(loaded: Any, split: str | None, where: str) -> Any:
    """A Dataset from a Dataset or DatasetDict; DatasetDict needs ``split`` (default 'train')."""
    if not hasattr(loaded, "keys"):
        return loaded
    names = list(loaded.keys())
    chosen = split or ("train" if "train" in names else None)
    if chosen not in names:
        from lmforge.config.hints import did_you_mean

        raise UserError(
            f"split '{split}' not found{did_you_mean(split or '', names)}" if split else "which split?",
            where=where,
            hint=f"set the source's split to one of: {', '.join(names)}",
        )
    return loaded[chosen]


def _iter_dataset(dataset: Any, name: str) -> Iterator[Row]:
    """Rows of a ``datasets`` Dataset, class ids of ``ClassLabel`` columns as names (:func:`_with_class_names`)."""
    import datasets

    features = getattr(dataset, "features", None) or {}
    named = {column: list(feature.names) for column, feature in features.items()
             if isinstance(feature, datasets.ClassLabel)}
    for index, row in enumerate(dataset, start=1):
        yield _with_class_names(dict(row), named), f"{name}:row {index}"


def _class_names(metadata: dict) -> dict[str, list[str]]:
    """``ClassLabel`` columns -> class names, from the ``huggingface`` schema metadata ``datasets`` writes into
    Parquet files (hub Parquet exports carry it); {} when absent or unreadable."""
    try:
        features = json.loads(metadata.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
        return {column: list(f["names"]) for column, f in features.items()
                if isinstance(f, dict) and f.get("_type") == "ClassLabel" and isinstance(f.get("names"), list)}
    except (ValueError, AttributeError, TypeError):
        return {}


def _with_class_names(row: dict, named: dict[str, list[str]]) -> dict:
    """``row`` with each class id of a ``ClassLabel`` column replaced by its name (``positive``, not ``1``); an id
    out of range (-1: "no label", as in GLUE test splits) becomes a missing value."""
    for column, names in named.items():
        value = row.get(column)
        if isinstance(value, int) and not isinstance(value, bool):
            row[column] = names[value] if 0 <= value < len(names) else None
    return row


def _iter_hub(source: SourceConfig, files: list[Path]) -> Iterator[Row]:
    import datasets

    try:
        loaded = datasets.load_dataset(source.path, split=source.split)
    except Exception as exc:  # offline, unknown id, gated: all read the same to the user
        raise UserError(
            "neither a local file/folder nor reachable on the hub"
            f" ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            where=source.path,
            hint="check the path; hub datasets need network access (HF_HUB_OFFLINE unset)",
        ) from None
    dataset = _pick_split(loaded, source.split, source.path)
    files.extend(Path(f["filename"]) for f in getattr(dataset, "cache_files", []) or [])
    yield from _iter_dataset(dataset, source.path)
