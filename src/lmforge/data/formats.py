"""Data formats: one spec per format, the one place that knows a format's fields. Torch-free.

A format reads a user's rows into canonical records. Every format has a *kind*, which fixes the
shape of its records for everything downstream (objectives consume kinds, not format names):

- ``text``:      ``{"text"}``, trained on every token (domain-adaptive training)
- ``messages``:  any fields, plus ``messages(record)`` -> a conversation ending with the answer
  (instruction tuning, chat; these formats are *generative*: prompts with reference answers)
- ``labelled``:  ``{"text", "text_pair" (or None), "label"}`` (classification)
- ``pairs``:     ``{"prompt", "chosen", "rejected"}`` (preference tuning)

Adding a format = a :class:`FormatSpec` passed to :func:`register_format` (its ``read`` validates
a row and names file:line in errors; see :mod:`lmforge.data.records` for the built-in readers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from lmforge.config.hints import did_you_mean
from lmforge.errors import UserError

Kind = Literal["text", "messages", "labelled", "pairs"]
Reader = Callable[[dict, str, Any], dict]  # (row, "file:line", DataConfig) -> canonical record


@dataclass(frozen=True)
class FormatSpec:
    name: str
    kind: Kind
    fields: tuple[str, ...]  # canonical fields: the keys data.columns may map to the user's columns
    required: tuple[str, ...]  # fields every canonical record holds
    text_fields: tuple[str, ...]  # strings data prepare normalises, redacts and filters (in order)
    read: Reader
    messages: Callable[[dict], list[dict]] | None = None  # messages kind: record -> conversation ending in the answer
    content_fields: tuple[str, ...] | None = None  # what deduplication compares (default: text_fields)
    augment_field: str | None = None  # the string EDA / paraphrases rewrite (None: not augmented)
    converters: Mapping[str, Callable[[dict], dict]] = field(default_factory=dict)  # other format -> record converter
    default_objective: str = "causal_lm"
    summary: str = ""
    # Column sets that identify this format when data.format is not set: names the reader takes as they are
    # (a tuple, mapped through data.columns), or well-known other names, {column: field} (mapped in data.columns
    # when detected, unless the user maps those fields).
    detect: tuple[tuple[str, ...] | Mapping[str, str], ...] = ()

    def detected_by(self, row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, str] | None:
        """The largest of ``detect``'s sets that ``row`` holds, as ``{row column: field}``, or None."""
        held = []
        for entry in self.detect:
            if not isinstance(entry, Mapping):
                found = {columns.get(f, f): f for f in entry}
            elif any(f in columns for f in entry.values()):
                continue  # the user maps these fields: their names, not these
            else:
                found = dict(entry)
            if all(column in row for column in found):
                held.append(found)
        return max(held, key=len) if held else None

    @property
    def generative(self) -> bool:
        """Records are prompts with reference answers: sample answers, generation metrics, compare."""
        return self.messages is not None

    def strings(self, record: dict, skip_roles: tuple[str, ...] = ()) -> list[str]:
        """The record's text strings in field order (a list of messages: each content, minus ``skip_roles``)."""
        found: list[str] = []
        for name in self.text_fields:
            value = record.get(name)
            if isinstance(value, list):  # messages
                found += [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") not in skip_roles]
            elif isinstance(value, str):
                found.append(value)
        return found

    @property
    def label(self) -> str | None:
        """The field holding the class (splits stratify by it; prepare checks it)."""
        return "label" if self.kind == "labelled" else None


FORMATS: dict[str, FormatSpec] = {}


def register_format(spec: FormatSpec) -> FormatSpec:
    if spec.name in FORMATS:
        raise ValueError(f"data format '{spec.name}' registered twice")
    if spec.kind == "messages" and spec.messages is None:
        raise ValueError(f"data format '{spec.name}' of kind messages needs messages(record)")
    FORMATS[spec.name] = spec
    return spec


def get_format(name: str, where: str = "data.format") -> FormatSpec:
    """The spec of ``name``; UserError with a did-you-mean when no format has that name."""
    if name not in FORMATS:
        raise UserError(f"unknown data format '{name}'{did_you_mean(name, FORMATS)}", where=where,
                        hint=f"formats: {', '.join(FORMATS)}")
    return FORMATS[name]


def detect_format(row: Mapping[str, Any], columns: Mapping[str, str],
                  kinds: tuple[str, ...] | None = None) -> list[tuple[str, dict[str, str]]]:
    """The formats ``row`` fits best when data.format is not set: ``[(name, {row column: field})]``, the most
    specific first (``text`` + ``label`` is classification, not text); several entries when equally specific,
    [] when none fits. A format without every field ``columns`` maps is not a candidate (``text_pair`` mapped:
    classification, even where the row also holds TRL's ``prompt`` + ``completion``), nor one of a kind the
    config's objective does not train on (``kinds``, when it names one)."""
    held = [(name, found) for name, spec in FORMATS.items()
            if set(columns) <= set(spec.fields) and (kinds is None or spec.kind in kinds)
            and (found := spec.detected_by(row, columns))]
    best = max((len(found) for _, found in held), default=0)
    return [(name, found) for name, found in held if len(found) == best]


def detect_help() -> str:
    """What identifies each format, for messages: ``chat (messages or conversations); ...`` (the format's own
    field names; the well-known other names are left out of the list)."""
    return "; ".join(f"{name} ({' or '.join(', '.join(entry) for entry in spec.detect if not isinstance(entry, Mapping))})"
                     for name, spec in FORMATS.items() if spec.detect)


def formats_of(kinds: tuple[str, ...]) -> list[str]:
    """The registered formats whose kind is one of ``kinds`` (what an objective can train on)."""
    return [name for name, spec in FORMATS.items() if spec.kind in kinds]


def _builtins() -> None:
    from lmforge.data import records
    from lmforge.data.messages import chat_messages, chat_to_instruction, instruction_messages, instruction_to_chat

    register_format(FormatSpec(
        "text", "text", ("text",), ("text",), ("text",), records.read_text, augment_field="text", detect=(("text",),),
        summary="raw documents, joined with EOS and chunked to max_length; every token trained"))
    register_format(FormatSpec(
        "instruction", "messages", ("instruction", "input", "output", "system"), ("instruction", "output"),
        ("system", "instruction", "input", "output"), records.read_instruction, instruction_messages,
        content_fields=("instruction", "input", "output"), augment_field="instruction",
        converters={"chat": chat_to_instruction},
        detect=(("instruction", "output"), ("prompt", "completion"),  # TRL's, read as they are
                {"question": "instruction", "answer": "output"}, {"query": "instruction", "response": "output"},
                {"prompt": "instruction", "response": "output"}, {"instruction": "instruction", "response": "output"},
                {"question": "instruction", "context": "input", "answer": "output"},  # SQuAD-like
                {"instruction": "instruction", "context": "input", "response": "output"}),  # Dolly
        summary="instruction (+ optional input and system) -> output; the output is trained"))
    register_format(FormatSpec(
        "chat", "messages", ("messages",), ("messages",), ("messages",), records.read_chat, chat_messages,
        converters={"instruction": instruction_to_chat}, detect=(("messages",), ("conversations",)),
        summary="OpenAI messages or ShareGPT conversations; every assistant turn is trained"))
    register_format(FormatSpec(
        "classification", "labelled", ("text", "text_pair", "label"), ("text", "label"), ("text", "text_pair"),
        records.read_classification, augment_field="text", default_objective="classification",
        detect=(("text", "label"), {"prompt": "text", "completion": "text_pair", "label": "label"}),  # feedback ratings
        summary="text (+ optional text_pair) -> label"))
    register_format(FormatSpec(
        "preference", "pairs", ("prompt", "chosen", "rejected"), ("prompt", "chosen", "rejected"),
        ("prompt", "chosen", "rejected"), records.read_preference, default_objective="dpo",
        detect=(("prompt", "chosen", "rejected"),), summary="prompt with a chosen and a rejected completion"))



def check_data_config(data: Any, prefix: str = "data") -> FormatSpec:
    """Check a data section against the formats (format names, columns, source formats, labels); torch-free.

    Returns the run's format spec; UserError names the field (``prefix.columns.x``, ``prefix.train[1].format``).
    """
    from lmforge.config.schema import SOURCE_KEYS, source_list

    spec = get_format(data.format, f"{prefix}.format")
    _check_columns(data.columns, spec, f"{prefix}.columns")
    for key in ("train", "eval"):
        value = getattr(data, key, None)
        for i, source in enumerate(source_list(value)):
            name = f"{prefix}.{key}[{i}]" if isinstance(value, list) else f"{prefix}.{key}"
            own = get_format(source.format or spec.name, f"{name}.format")
            if own.name != spec.name and own.name not in spec.converters:
                convertible = [f"{o} <-> {f.name}" for f in FORMATS.values() for o in f.converters]
                raise UserError(f"'{own.name}' records cannot be converted to data.format '{spec.name}' (convertible: "
                                f"{', '.join(convertible) or 'none'})", where=f"{name}.format",
                                hint="use a separate run or data.tasks for other formats")
            _check_columns(source.columns or {}, own, f"{name}.columns")
    if data.labels is not None and spec.label is None:
        raise UserError("labels are only used by classification data", where=f"{prefix}.labels")
    return spec


def _check_columns(columns: Mapping[str, str], spec: FormatSpec, where: str) -> None:
    for key in columns:
        if key not in spec.fields:
            raise UserError(f"not a field of format '{spec.name}'{did_you_mean(key, spec.fields)}; "
                            f"fields are {', '.join(spec.fields)}", where=f"{where}.{key}")


_builtins()
