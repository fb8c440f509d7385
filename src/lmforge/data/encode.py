"""Canonical records -> token ids and labels.

Causal LM features are ``{"input_ids": list[int], "labels": list[int]}`` (labels -100 = not
trained; the model shifts labels itself). Classification features are ``{"input_ids",
"label": int, optional "token_type_ids"}``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from lmforge.config.schema import DataConfig
from lmforge.data.chat import encode_chat
from lmforge.data.formats import get_format
from lmforge.data.messages import to_messages
from lmforge.errors import UserError

MIN_BLOCK = 16  # a trailing text block shorter than this is dropped


class Encoded(list):
    """A list of features, plus what encoding dropped or cut.

    ``dropped``: examples (or the trailing text remainder) removed because no trained token was
    left within ``max_length``; ``truncated``: examples cut to ``max_length``; ``blocks``: for text, the
    ``max_length`` blocks the documents were cut into (the examples trained and evaluated), else None.
    """

    def __init__(self, features=(), *, dropped: int = 0, truncated: int = 0, longest: int = 0,
                 first_dropped: str | None = None, blocks: int | None = None):
        super().__init__(features)
        self.blocks = blocks
        self.dropped = dropped
        self.truncated = truncated
        self.longest = longest  # tokens of the longest example that was cut or dropped
        self.first_dropped = first_dropped  # where the first dropped example came from (file:line)

    @classmethod
    def combined(cls, parts: list) -> "Encoded":
        """The counts of several encodings of one split's blocks (no features): what :meth:`note` says of all."""
        parts = [p for p in parts if isinstance(p, Encoded)]
        return cls(dropped=sum(p.dropped for p in parts), truncated=sum(p.truncated for p in parts),
                   longest=max((p.longest for p in parts), default=0),
                   first_dropped=next((p.first_dropped for p in parts if p.first_dropped), None),
                   blocks=sum(p.blocks for p in parts) if any(p.blocks is not None for p in parts) else None)

    def note(self, records: int, max_length: int) -> str | None:
        """What a user should hear about the examples cut or dropped at ``max_length`` (None when none was;
        the short remainder of a text stream is not worth a word). Text: how many blocks the documents made,
        which is what eval_examples and the steps per epoch count."""
        if self.blocks is not None:
            return f"{records} documents -> {self.blocks} blocks of up to {max_length} tokens (each block is an example)"
        cut = self.truncated - (self.dropped if self.longest else 0)
        if not self.first_dropped and cut <= 0:
            return None
        parts = []
        if self.dropped and self.first_dropped:
            parts.append(f"{self.dropped} of {records} examples left out: no trained token within "
                         f"data.max_length={max_length} (the first: {self.first_dropped})")
        if cut > 0:
            parts.append(f"{cut} of {records} cut short at data.max_length={max_length} (their answers lose the end)")
        if self.longest:
            parts.append(f"the longest is {self.longest} tokens: raise data.max_length to keep every example "
                         "whole, or shorten the inputs")
        return "; ".join(parts)


def encode_causal(records: list[dict], tokenizer, data_cfg: DataConfig) -> Encoded:
    """Causal LM features for records of a text or messages format (:mod:`lmforge.data.formats`).

    text: every document is tokenized, an eos appended, all concatenated and cut into
    ``max_length`` blocks (all tokens trained; a final remainder under 16 tokens is dropped).
    messages (instruction, chat, ...): one example per record, rendered with the chat template, labels per
    ``data_cfg.train_on``, truncated to ``max_length``; examples with no trained token left are
    dropped (counted in ``.dropped``; :meth:`Encoded.note` is what the caller says, naming the split).
    """
    kind = get_format(data_cfg.format).kind
    if kind == "text":
        out = _encode_text(records, tokenizer, data_cfg.max_length)
    elif kind == "messages":
        out = _encode_chats(records, tokenizer, data_cfg)
    else:
        raise UserError(
            f"data.format '{data_cfg.format}' is not trained as a causal language model",
            where="data.format",
            hint="use text, instruction or chat data with the causal_lm objective",
        )
    if not out:
        raise UserError(
            f"no example left after tokenizing {len(records)} records",
            where="data.max_length",
            hint="raise data.max_length, or check that the records hold text",
        )
    return out


def _encode_text(records: list[dict], tokenizer, max_length: int) -> Encoded:
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for start in range(0, len(records), 512):
        texts = [r["text"] for r in records[start : start + 512]]
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            stream.extend(eos)
    blocks = [stream[i : i + max_length] for i in range(0, len(stream), max_length)]
    dropped = 0
    if blocks and len(blocks[-1]) < MIN_BLOCK:
        blocks.pop()
        dropped = 1
    return Encoded(({"input_ids": b, "labels": list(b)} for b in blocks), dropped=dropped, blocks=len(blocks))


def _encode_chats(records: list[dict], tokenizer, data_cfg: DataConfig) -> Encoded:
    out, dropped, truncated, longest, first_dropped = [], 0, 0, 0, None
    for record in records:
        try:
            enc = encode_chat(to_messages(record, data_cfg.format), tokenizer, data_cfg.train_on)
        except UserError as exc:
            message = str(exc).split("\n  hint:")[0]
            raise UserError(message, where=record.get("_where"), hint=exc.hint) from None
        ids, labels = enc.input_ids, enc.labels
        if len(ids) > data_cfg.max_length:
            longest = max(longest, len(ids))
            ids, labels = ids[: data_cfg.max_length], labels[: data_cfg.max_length]
            truncated += 1
        if all(label == -100 for label in labels):
            dropped += 1
            first_dropped = first_dropped or record.get("_where", "?")
            continue
        out.append({"input_ids": ids, "labels": labels})
    return Encoded(out, dropped=dropped, truncated=truncated, longest=longest, first_dropped=first_dropped)


def label_set(records: list[dict], data_cfg: DataConfig) -> list[str]:
    """The class names: ``data.labels`` if given, else the sorted unique labels of ``records``.

    UserError when every labelled record carries the same label: a classifier needs two classes.
    """
    seen = Counter(r["label"] for r in records if "label" in r)  # preference records (reward models) have none
    if len(seen) == 1:
        (label, count), = seen.items()
        first = next(str(r.get("_where", "")) for r in records if "label" in r)
        raise UserError(f"all {count} labelled examples have the label '{label}': a classifier needs at least two "
                        "classes", where=first.rsplit(":", 1)[0] if ":" in first else "data.train",
                        hint="add examples of the other classes (check data.columns.label names the right column)")
    if data_cfg.labels is not None:
        return list(data_cfg.labels)
    return sorted(seen)


def encode_classification(records: list[dict], tokenizer, data_cfg: DataConfig, labels: list[str]) -> list[dict]:
    """Classification features: ``tokenizer(text, text_pair)`` truncated to ``max_length``, label index.

    A record whose label is not in ``labels`` raises UserError (e.g. an eval label unseen in train).
    """
    index = {name: i for i, name in enumerate(labels)}
    out = []
    for record in records:
        if record["label"] not in index:
            from lmforge.config.hints import did_you_mean

            raise UserError(
                f"label '{record['label']}' is not one of the known labels{did_you_mean(record['label'], labels)}",
                where=record.get("_where"),
                hint=f"known labels: {', '.join(labels)} (set data.labels to list every class)",
            )
        enc = tokenizer(
            record["text"], record.get("text_pair"), truncation=True, max_length=data_cfg.max_length
        )
        feature = {"input_ids": list(enc["input_ids"]), "label": index[record["label"]]}
        if "token_type_ids" in enc:
            feature["token_type_ids"] = list(enc["token_type_ids"])
        out.append(feature)
    return out


def length_note(features: Any, records: int, max_length: int) -> str | None:
    """What to say about examples ``features`` (an encoding of ``records`` records) lost or cut at ``max_length``."""
    return features.note(records, max_length) if isinstance(features, Encoded) else None
