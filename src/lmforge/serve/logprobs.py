"""Token log-probabilities in OpenAI's two response shapes.

Chat completions (``logprobs: true``, ``top_logprobs: k``) answer ``{"content": [{"token", "logprob", "bytes",
"top_logprobs": [...]}, ...]}``; text completions (``logprobs: k``) answer the legacy columns ``{"tokens",
"token_logprobs", "top_logprobs", "text_offset"}``. The numbers come from the generation engine
(:class:`lmforge.model.decode.TokenLogprob`: the model's raw distribution, before temperature and top_p).

A token's ``bytes`` are its exact bytes for byte-level BPE vocabularies (GPT-2 style, e.g. SmolLM2, Llama 3,
Qwen), where one token can hold part of a UTF-8 character and its text alone shows as U+FFFD; for other
vocabularies they are the UTF-8 bytes of the token's decoded text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

from transformers.convert_slow_tokenizer import bytes_to_unicode

from lmforge.model.decode import TokenLogprob


class TokenPieces:
    """Text and bytes of single tokens of one tokenizer (cached: a vocabulary's few hot tokens repeat)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        decoder = getattr(backend, "decoder", None)
        self.byte_level = type(decoder).__name__ == "ByteLevel"
        self.added = {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {}) or {}}
        self.piece = lru_cache(maxsize=65536)(self._piece)

    def _piece(self, token: int) -> tuple[str, list[int]]:
        text = self.tokenizer.decode([token], skip_special_tokens=False)
        if self.byte_level and token not in self.added:
            raw = self.tokenizer.convert_ids_to_tokens(token)
            if isinstance(raw, str) and all(ch in _UNICODE_TO_BYTE for ch in raw):
                return text, [_UNICODE_TO_BYTE[ch] for ch in raw]
        return text, list(text.encode("utf-8"))


def chat_logprobs(entries: Sequence[TokenLogprob], pieces: TokenPieces) -> dict:
    """``choice.logprobs`` of a chat completion (or of one streamed chunk) for ``entries``."""
    def one(token: int, logprob: float) -> dict:
        text, raw = pieces.piece(token)
        return {"token": text, "logprob": logprob, "bytes": raw}

    return {"content": [{**one(e.token, e.logprob), "top_logprobs": [one(t, lp) for t, lp in e.top]}
                        for e in entries]}


def completion_logprobs(entries: Sequence[TokenLogprob], offsets: Sequence[int], pieces: TokenPieces,
                        first: int | None = None) -> dict:
    """``choice.logprobs`` of a text completion (or of one streamed chunk): the legacy columns. ``offsets``: each
    token's character offset in the returned text (``first`` included). ``top_logprobs`` maps token text to
    log-probability, the ``k`` most likely first (two tokens with the same text keep the likelier one).
    ``first``: an echoed prompt's first token, which has no log-probability (null, as OpenAI answers it)."""
    tops: list[dict | None] = []
    for e in entries:
        top: dict[str, float] = {}
        for t, lp in e.top:
            top.setdefault(pieces.piece(t)[0], lp)
        tops.append(top)
    tokens = [pieces.piece(e.token)[0] for e in entries]
    values: list[float | None] = [e.logprob for e in entries]
    if first is not None:
        tokens, values, tops = [pieces.piece(first)[0], *tokens], [None, *values], [None, *tops]
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": list(offsets)}


# GPT-2's reversible byte -> printable character table, which byte-level BPE vocabularies are written in
_UNICODE_TO_BYTE = {ch: b for b, ch in bytes_to_unicode().items()}
