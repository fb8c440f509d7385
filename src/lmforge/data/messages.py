"""Generative records as messages (the whole conversation, the prompt, the reference answer), and the
instruction <-> chat conversions."""

from __future__ import annotations

from lmforge.config.schema import DataConfig
from lmforge.errors import UserError


def instruction_messages(record: dict) -> list[dict]:
    """``[system?], user = instruction (+ "\\n\\n" + input), assistant = output``."""
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
    user = record["instruction"]
    if record.get("input"):
        user = f"{user}\n\n{record['input']}"
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": record["output"]})
    return messages


def chat_messages(record: dict) -> list[dict]:
    """A chat record's messages as plain ``{"role", "content"}`` dicts."""
    return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]


def to_messages(record: dict, data_format: str | None = None) -> list[dict]:
    """A record of a generative format -> ``[{"role", "content"}, ...]`` ending with the assistant answer.

    The record's own ``_format`` (set when it was read) wins over ``data_format``; without either, chat
    and instruction records are recognised by their fields.
    """
    from lmforge.data.formats import get_format

    data_format = record.get("_format") or data_format  # a multi-task run mixes formats: the record knows its own
    if data_format is None:
        data_format = "chat" if "messages" in record else "instruction" if "instruction" in record else None
    spec = get_format(data_format) if data_format else None
    if spec is None or spec.messages is None:
        raise ValueError(f"to_messages needs a record of a generative format, not {data_format!r}")
    return spec.messages(record)


def prompt_messages(record: dict, data_cfg: DataConfig | None = None) -> list[dict]:
    """The messages up to, not including, the final assistant turn (what a model is asked)."""
    return to_messages(record, data_cfg.format if data_cfg else None)[:-1]


def reference_text(record: dict, data_cfg: DataConfig | None = None) -> str:
    """The final assistant answer of a generative record."""
    return to_messages(record, data_cfg.format if data_cfg else None)[-1]["content"]


def provenance(record: dict) -> dict:
    """The record's provenance keys (``_where``, ``_source``), which conversions carry over."""
    return {k: v for k, v in record.items() if k.startswith("_")}


def instruction_to_chat(record: dict) -> dict:
    """``{instruction, input, output, system}`` -> ``{messages}``; input is appended to the instruction after a blank line."""
    user = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]
    return {"messages": messages, **provenance(record)}


def chat_to_instruction(record: dict) -> dict:
    """Single-turn ``{messages}`` (optional system, one user, one assistant) -> instruction record."""
    messages = record["messages"]
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    turns = messages[1:] if system is not None else messages
    if [m["role"] for m in turns] != ["user", "assistant"]:
        raise UserError(
            "only single-turn chats (user, assistant) convert to instruction records",
            where=str(record.get("_where", "?")),
            hint="keep the data in chat format for multi-turn conversations",
        )
    return {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"], "system": system, **provenance(record)}
