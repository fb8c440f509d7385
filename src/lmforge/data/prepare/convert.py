"""Format conversions: instruction <-> chat, ShareGPT <-> OpenAI messages, CSV -> classification.

Pure functions on dicts (plus one CSV reader). Provenance keys (``_where``, ``_source``) are
carried over. Conversions that would lose information raise UserError naming the record.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.data.messages import chat_to_instruction, instruction_to_chat, provenance
from lmforge.data.prepare.fields import where
from lmforge.errors import UserError

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "system": "system"}
_OPENAI_ROLES = {"user": "human", "assistant": "gpt", "system": "system"}


def sharegpt_to_openai(record: dict) -> dict:
    """``{"conversations": [{"from", "value"}]}`` -> ``{"messages": [{"role", "content"}]}``."""
    messages = []
    for turn in record.get("conversations", []):
        role = _SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
        if role is None or not isinstance(turn.get("value"), str):
            raise UserError(
                f"ShareGPT turn with unknown speaker '{turn.get('from')}' or no text value",
                where=where(record),
                hint=f"speakers must be one of {', '.join(sorted(_SHAREGPT_ROLES))}",
            )
        messages.append({"role": role, "content": turn["value"]})
    return {"messages": messages, **provenance(record)}


def openai_to_sharegpt(record: dict) -> dict:
    """``{"messages": [{"role", "content"}]}`` -> ``{"conversations": [{"from", "value"}]}``."""
    turns = []
    for m in record["messages"]:
        if m["role"] not in _OPENAI_ROLES:
            raise UserError(f"role '{m['role']}' has no ShareGPT speaker", where=where(record))
        turns.append({"from": _OPENAI_ROLES[m["role"]], "value": m["content"]})
    return {"conversations": turns, **provenance(record)}


def csv_to_classification(path: Path, text_column: str, label_column: str, pair_column: str | None = None) -> list[dict]:
    """Rows of a CSV / TSV file -> classification records ``{text, text_pair, label, _where}``, read by the
    training loaders' reader (delimiter from the header, BOM, quoted multi-line cells; ``_where`` = first line)."""
    from lmforge.data.sources import csv_rows

    path = Path(path)
    records = []
    for row, where in csv_rows(path):
        for column in (text_column, label_column, pair_column):
            if column is not None and column not in row:
                raise UserError(f"no column '{column}'", where=f"{path}:1", hint=f"columns are {', '.join(row)}")
        records.append({
            "text": row[text_column],
            "text_pair": row[pair_column] if pair_column else None,
            "label": (row[label_column] or "").strip(),
            "_where": where,
        })
    return records
