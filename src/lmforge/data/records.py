"""Raw rows -> canonical records, validated with file:line errors: the built-in formats' readers.

Each format's reader is named in its spec (:mod:`lmforge.data.formats`). Canonical records (plain
dicts), each with ``"_where": "file:line"``:

- text:           ``{"text"}``
- instruction:    ``{"instruction", "input" ("" if none), "output", "system" (None if none)}``
- chat:           ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``
- classification: ``{"text", "text_pair" (None if none), "label": str}``
- preference:     ``{"prompt", "chosen", "rejected"}``

``data.columns`` maps canonical fields to the user's column names (``data_cfg.column(field)``).
Chat rows may be OpenAI style (``messages`` of ``{role, content}``) or ShareGPT style
(``conversations`` of ``{from: human|gpt|system, value}``); both are detected per row. Instruction rows
without an ``instruction`` column may be TRL's ``{prompt, completion}`` (unless data.columns maps either field).
``data.system_prompt`` fills the system message of instruction and chat records that have none.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from lmforge.config.hints import did_you_mean
from lmforge.config.schema import DataConfig
from lmforge.data.sources import Row
from lmforge.errors import UserError

ROLES = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system message (the server takes it too)
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
}


def to_records(rows: list[Row], data_cfg: DataConfig) -> list[dict]:
    """Map every raw row to the canonical record of ``data_cfg.format`` (UserError on a bad row)."""
    return list(convert_rows(rows, data_cfg))


def convert_rows(rows: Iterable[Row], data_cfg: DataConfig) -> Iterator[dict]:
    """Lazily map raw rows to canonical records, one at a time (UserError on the first bad row)."""
    from lmforge.data.formats import get_format

    convert = get_format(data_cfg.format).read
    for row, where in rows:
        yield {**convert(row, where, data_cfg), "_where": where, "_format": data_cfg.format}


def _missing(row: dict, where: str, data_cfg: DataConfig, field: str) -> UserError:
    column = data_cfg.column(field)
    present = ", ".join(map(str, row)) or "(none)"
    return UserError(
        f"missing column '{column}' (field '{field}' of format {data_cfg.format})"
        f"{did_you_mean(column, row.keys())}; columns present: {present}",
        where=where,
        hint=f"set data.columns.{field} to the name of your column",
    )


def _string(value: Any, where: str, what: str, *, allow_empty: bool = False) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise UserError(f"{what} must be a string, got {type(value).__name__}", where=where)
    if not allow_empty and not value.strip():
        raise UserError(f"{what} is empty", where=where)
    return value


def _required(row: dict, where: str, data_cfg: DataConfig, field: str, *, allow_empty: bool = False) -> str:
    column = data_cfg.column(field)
    if column not in row:
        raise _missing(row, where, data_cfg, field)
    return _string(row[column], where, f"column '{column}'", allow_empty=allow_empty)


def _optional(row: dict, where: str, data_cfg: DataConfig, field: str) -> str | None:
    """The field's value, or None when absent/null. A column the user mapped explicitly must exist."""
    column = data_cfg.column(field)
    if column not in row:
        if field in data_cfg.columns:
            raise _missing(row, where, data_cfg, field)
        return None
    value = row[column]
    if value is None:
        return None
    return _string(value, where, f"column '{column}'", allow_empty=True)


def read_text(row: dict, where: str, data_cfg: DataConfig) -> dict:
    return {"text": _required(row, where, data_cfg, "text")}


def read_instruction(row: dict, where: str, data_cfg: DataConfig) -> dict:
    system = _optional(row, where, data_cfg, "system")
    if (not {"instruction", "output"} & set(data_cfg.columns) and data_cfg.column("instruction") not in row
            and "prompt" in row and "completion" in row):  # TRL's prompt-completion records, detected per row
        instruction = _string(row["prompt"], where, "column 'prompt'")
        output = _string(row["completion"], where, "column 'completion'")
    else:
        instruction = _required(row, where, data_cfg, "instruction")
        output = _required(row, where, data_cfg, "output")
    return {
        "instruction": instruction,
        "input": _optional(row, where, data_cfg, "input") or "",
        "output": output,
        "system": system if system and system.strip() else data_cfg.system_prompt,
    }


def read_classification(row: dict, where: str, data_cfg: DataConfig) -> dict:
    column = data_cfg.column("label")
    if column not in row:
        raise _missing(row, where, data_cfg, "label")
    raw = row[column]
    label = "" if raw is None else str(raw).strip()
    if not label:
        raise UserError(f"empty label in column '{column}'", where=where)
    if data_cfg.labels is not None and label not in data_cfg.labels:
        raise UserError(
            f"label '{label}' is not in data.labels{did_you_mean(label, data_cfg.labels)}",
            where=where,
            hint=f"data.labels is [{', '.join(data_cfg.labels)}]; add the label or fix the row",
        )
    pair = _optional(row, where, data_cfg, "text_pair")
    return {
        "text": _required(row, where, data_cfg, "text"),
        "text_pair": pair if pair else None,
        "label": label,
    }


def read_preference(row: dict, where: str, data_cfg: DataConfig) -> dict:
    fields = ("prompt", "chosen", "rejected")
    for field in fields:
        if data_cfg.column(field) not in row:
            raise _missing(row, where, data_cfg, field)
    if any(isinstance(row[data_cfg.column(f)], list) for f in fields):
        return _conversational_preference({f: row[data_cfg.column(f)] for f in fields}, where, data_cfg)
    return {field: _required(row, where, data_cfg, field) for field in fields}


def _conversational_preference(values: dict, where: str, data_cfg: DataConfig) -> dict:
    """TRL's conversational preference rows -> ``{prompt, chosen, rejected}`` strings.

    ``prompt`` a string or ``[{"role": "user", ...}]``; ``chosen`` / ``rejected`` a string, ``[assistant]``, or
    the whole conversation ``[user, assistant]`` repeating the prompt (UltraFeedback's layout). A prompt is one
    user turn: preference objectives score an answer to one question (multi-turn histories are refused).
    """
    prompt = values["prompt"]
    if isinstance(prompt, list):
        turns = [_message(t, where, i) for i, t in enumerate(prompt, start=1)]
        if [t["role"] for t in turns] != ["user"]:
            raise UserError(f"column '{data_cfg.column('prompt')}' holds {len(turns)} messages "
                            f"({', '.join(t['role'] for t in turns) or 'none'}); a preference prompt is one user "
                            "message", where=where,
                            hint="keep one user turn per example; a shared system message goes in data.system_prompt")
        prompt = turns[0]["content"]
    out = {"prompt": _string(prompt, where, f"column '{data_cfg.column('prompt')}'")}
    for side in ("chosen", "rejected"):
        column, value = data_cfg.column(side), values[side]
        if isinstance(value, list):
            turns = [_message(t, where, i) for i, t in enumerate(value, start=1)]
            if len(turns) == 2 and turns[0]["role"] == "user":
                if turns[0]["content"].strip() != out["prompt"].strip():
                    raise UserError(f"column '{column}' repeats a prompt that differs from column "
                                    f"'{data_cfg.column('prompt')}'", where=where)
                turns = turns[1:]
            if [t["role"] for t in turns] != ["assistant"]:
                raise UserError(f"column '{column}' must end in one assistant answer to the prompt "
                                f"(got roles: {', '.join(t['role'] for t in turns) or 'none'})", where=where,
                                hint="give the answer as a string, [assistant] or [user, assistant]")
            value = turns[0]["content"]
        out[side] = _string(value, where, f"column '{column}'")
    return out


def read_chat(row: dict, where: str, data_cfg: DataConfig) -> dict:
    column = data_cfg.column("messages")
    if column not in row and "messages" not in data_cfg.columns and "conversations" in row:
        column = "conversations"  # ShareGPT
    if column not in row:
        error = _missing(row, where, data_cfg, "messages")
        if "messages" not in data_cfg.columns and len(row) >= 2 and all(isinstance(v, str) for v in row.values()):
            names = list(row)  # plain text columns: question / answer records rather than conversations
            error = UserError(str(error).split("\n")[0].removeprefix(f"{where}: "), where=where,
                              hint=f"these look like instruction records: use data.format: instruction with "
                                   f"data.columns: {{instruction: {names[0]}, output: {names[-1]}}}")
        raise error
    turns = row[column]
    if isinstance(turns, str):  # CSV / Parquet cells may hold the list as JSON text
        try:
            turns = json.loads(turns)
        except json.JSONDecodeError as exc:
            raise UserError(f"column '{column}' holds malformed JSON: {exc.msg}", where=where) from None
    if not isinstance(turns, list) or not turns:
        raise UserError(f"column '{column}' must be a non-empty list of messages", where=where)
    messages = [_message(turn, where, index) for index, turn in enumerate(turns, start=1)]
    if messages[-1]["role"] != "assistant":
        raise UserError(
            f"the last message must be from the assistant (got '{messages[-1]['role']}')",
            where=where,
            hint="each conversation ends with the answer the model should learn",
        )
    if data_cfg.system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": data_cfg.system_prompt})
    return {"messages": messages}


def _message(turn: Any, where: str, index: int) -> dict:
    """One OpenAI-style ({role, content}) or ShareGPT-style ({from, value}) turn -> {role, content}."""
    if not isinstance(turn, dict):
        raise UserError(f"message {index} must be an object, got {type(turn).__name__}", where=where)
    if "role" in turn:
        role, content = turn["role"], turn.get("content")
    elif "from" in turn:
        role, content = turn["from"], turn.get("value")
    else:
        raise UserError(
            f"message {index} has neither 'role'/'content' (OpenAI) nor 'from'/'value' (ShareGPT) keys",
            where=where,
        )
    canonical = ROLES.get(str(role).strip().lower())
    if canonical is None:
        raise UserError(
            f"message {index} has unknown role '{role}'{did_you_mean(str(role), ROLES)}",
            where=where,
            hint="roles are system (or developer), user, assistant (ShareGPT: system, human, gpt); tool and "
                 "function messages are not trained: leave them out of the conversation",
        )
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise UserError(f"message {index} content must be a string, got {type(content).__name__}", where=where)
    return {"role": canonical, "content": content}
