"""Quality filters: empty, too short / too long, repeated-line and repeated-n-gram junk.

:func:`reject_reason` looks at one record's joined text and returns the name of the first rule
it breaks (``"empty"``, ``"too_short"``, ``"too_long"``, ``"repeated_lines"``,
``"repeated_ngrams"``) or ``None`` to keep it. Length is in tokens of ``tokenizer`` when one is
given (no special tokens), else in whitespace-separated words.
"""

from __future__ import annotations

from typing import Any

from lmforge.config.prepare import FilterConfig


def length_of(text: str, tokenizer: Any = None) -> int:
    """Tokens of ``tokenizer`` (without special tokens) or, without one, words."""
    if tokenizer is None:
        return len(text.split())
    return len(tokenizer.encode(text, add_special_tokens=False))


def repeated_line_share(text: str) -> float:
    """Share of lines (of 3+ words) that repeat an earlier line (0.0 for fewer than 3 such lines).

    Short lines ("}", "end", "return x") repeat in normal code and lists, so they do not count.
    """
    lines = [line.strip() for line in text.split("\n") if len(line.split()) >= 3]
    if len(lines) < 3:
        return 0.0
    return 1.0 - len(set(lines)) / len(lines)


def repeated_ngram_share(words: list[str], n: int) -> float:
    """Share of word ``n``-grams that repeat an earlier n-gram (0.0 when there are none)."""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def reject_reason(text: str, cfg: FilterConfig, tokenizer: Any = None) -> str | None:
    """The first filter rule ``text`` breaks, or None when it passes all of them."""
    if not text.strip():
        return "empty"
    length = length_of(text, tokenizer)
    if length < cfg.min_length:
        return "too_short"
    if cfg.max_length is not None and length > cfg.max_length:
        return "too_long"
    if repeated_line_share(text) > cfg.max_repeated_lines:
        return "repeated_lines"
    words = text.lower().split()
    if len(words) >= cfg.min_words_for_repetition and repeated_ngram_share(words, cfg.ngram) > cfg.max_repeated_ngrams:
        return "repeated_ngrams"
    return None
