"""Chat and instruction records as messages: the whole conversation, the prompt, the reference answer."""

from __future__ import annotations

from lmforge.config.schema import DataConfig


def to_messages(record: dict) -> list[dict]:
    """A chat or instruction record -> ``[{"role", "content"}, ...]`` ending with the assistant answer.

    Instruction records become ``[system?], user = instruction (+ "\\n\\n" + input), assistant = output``.
    """
    if "messages" in record:
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if "instruction" not in record:
        raise ValueError("to_messages needs a chat or instruction record")
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
    user = record["instruction"]
    if record.get("input"):
        user = f"{user}\n\n{record['input']}"
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": record["output"]})
    return messages


def prompt_messages(record: dict, data_cfg: DataConfig | None = None) -> list[dict]:
    """The messages up to, not including, the final assistant turn (what a model is asked)."""
    return to_messages(record)[:-1]


def reference_text(record: dict) -> str:
    """The final assistant answer of a chat or instruction record."""
    return to_messages(record)[-1]["content"]
