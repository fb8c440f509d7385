"""Show what the model will see: rendered examples with the trained spans marked (``lmforge data preview``)."""

from __future__ import annotations

from lmforge.config.schema import DataConfig
from lmforge.data.chat import encode_chat, token_end
from lmforge.data.formats import get_format
from lmforge.data.messages import to_messages

GREEN, RESET = "\x1b[32m", "\x1b[0m"


def preview(records: list[dict], tokenizer, data_cfg: DataConfig, n: int = 3, color: bool = False,
            marks: tuple[str, str] | None = None) -> str:
    """The first ``n`` records as the model sees them, one block each.

    Each block: a header with the record's origin, the rendered text with trained spans marked
    (``marks`` = (opening, closing) when given, else ANSI green when ``color``, else ``[[ ]]``), and
    ``tokens: total N, trained M``.
    Classification blocks show the label instead of trained spans; preference blocks show the
    three texts and their token counts.
    """
    marks = marks or ((GREEN, RESET) if color else ("[[", "]]"))
    blocks = []
    for number, record in enumerate(records[:n], start=1):
        header = f"--- example {number} ({record.get('_where', '?')}) ---"
        body = _BODIES[get_format(data_cfg.format).kind](record, tokenizer, data_cfg, marks)
        blocks.append(f"{header}\n{body}")
    return "\n\n".join(blocks) + "\n"


def mark(text: str, spans: list[tuple[int, int]], marks: tuple[str, str]) -> str:
    """``text`` with each (start, end) character span wrapped in ``marks`` (opening, closing)."""
    opening, closing = marks
    parts, cursor = [], 0
    for start, end in sorted(spans):
        start, end = max(start, cursor), min(end, len(text))
        if end <= start:
            continue
        parts += [text[cursor:start], opening, text[start:end], closing]
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def _chat_body(record: dict, tokenizer, data_cfg: DataConfig, marks: tuple[str, str]) -> str:
    enc = encode_chat(to_messages(record, data_cfg.format), tokenizer, data_cfg.train_on)
    kept = min(len(enc.input_ids), data_cfg.max_length)
    cut = token_end(enc, kept)
    text = mark(enc.text[:cut], [(a, min(b, cut)) for a, b in enc.spans], marks)
    trained = sum(label != -100 for label in enc.labels[:kept])
    note = ""
    if kept < len(enc.input_ids):
        note = f" (truncated from {len(enc.input_ids)} to data.max_length={data_cfg.max_length})"
    if not trained:
        note += " -- no trained token: this example is dropped"
    sep = "" if text.endswith("\n") else "\n"
    return f"{text}{sep}tokens: total {kept}, trained {trained}{note}"


def _text_body(record: dict, tokenizer, data_cfg: DataConfig, marks: tuple[str, str]) -> str:
    enc = tokenizer(record["text"], add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
    total = len(enc["input_ids"]) + (tokenizer.eos_token_id is not None)
    text, note = record["text"] + (tokenizer.eos_token or ""), ""
    if total > data_cfg.max_length and "offset_mapping" in enc:  # show one block's worth
        text = record["text"][: enc["offset_mapping"][data_cfg.max_length - 1][1]]
        note = f"\n... ({total - data_cfg.max_length} more tokens, shown in later blocks)"
    blocks = f" (documents are concatenated into blocks of {data_cfg.max_length})"
    return f"{mark(text, [(0, len(text))], marks)}{note}\ntokens: total {total}, trained {total}{blocks}"


def _classification_body(record: dict, tokenizer, data_cfg: DataConfig, marks: tuple[str, str]) -> str:
    enc = tokenizer(record["text"], record.get("text_pair"), truncation=True, max_length=data_cfg.max_length)
    shown = record["text"] if record.get("text_pair") is None else f"{record['text']}\n[pair] {record['text_pair']}"
    label = mark(record["label"], [(0, len(record["label"]))], marks)
    return f"{shown}\nlabel: {label}\ntokens: total {len(enc['input_ids'])}, trained 0 (the label is the target)"


def _preference_body(record: dict, tokenizer, data_cfg: DataConfig, marks: tuple[str, str]) -> str:
    counts = {k: len(tokenizer(record[k], add_special_tokens=False)["input_ids"]) for k in ("prompt", "chosen", "rejected")}
    return (
        f"prompt: {record['prompt']}\nchosen: {mark(record['chosen'], [(0, len(record['chosen']))], marks)}\n"
        f"rejected: {record['rejected']}\n"
        f"tokens: prompt {counts['prompt']}, chosen {counts['chosen']}, rejected {counts['rejected']}"
    )


_BODIES = {  # by kind of format (lmforge.data.formats)
    "text": _text_body,
    "messages": _chat_body,
    "labelled": _classification_body,
    "pairs": _preference_body,
}
