"""Flags on sample generations, so a report never shows a looping or cut-off answer unremarked.

``repetitive``: the answer loops. Of its word 4-grams (lowercased, punctuation kept apart), at least
30% repeat an earlier 4-gram of the same answer, or one sentence of 4+ words occurs twice. Ordinary
prose stays far below (repeated 4-grams are rare outside lists and loops); "The company is a
non-profit organization. The company is a non-profit organization." is flagged.
``truncated``: generation stopped at ``eval.max_new_tokens`` before the model ended its turn (the
answer is cut; raise max_new_tokens or check that the model learned to stop).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Mapping

NGRAM = 4
REPEATED_SHARE = 0.3
FLAGS = ("repetitive", "truncated")
_WORD = re.compile(r"\w+|[^\w\s]")
_SENTENCE = re.compile(r"[^.!?\n]+")


def repeated_share(text: str, n: int = NGRAM) -> float:
    """Share of the word n-grams of ``text`` that repeat an earlier n-gram of it (0.0 for short texts)."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    seen: set[tuple] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def is_repetitive(text: str) -> bool:
    """See the module doc."""
    if repeated_share(text) >= REPEATED_SHARE:
        return True
    sentences = Counter(" ".join(_WORD.findall(s.lower())) for s in _SENTENCE.findall(text))
    return any(count > 1 and len(sentence.split()) >= NGRAM for sentence, count in sentences.items())


def sample_flags(text: str, truncated: bool | None) -> list[str]:
    """The flags of one answer, in :data:`FLAGS` order."""
    flags = ["repetitive"] if is_repetitive(text) else []
    return flags + (["truncated"] if truncated else [])


def flag_samples(samples: list[Mapping[str, Any]], sides: tuple[str, ...] = ("before", "after", "output")
                 ) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """(samples with ``"flags": {side: [flag, ...]}``, counts ``{flag: {side: n}}`` plus ``"of": {side: n}``).

    A sample's ``truncated`` may be ``{side: bool}`` (from ``sample_generations``); missing = unknown,
    counted as not truncated.
    """
    out, counts = [], {flag: {} for flag in FLAGS}
    totals: dict[str, int] = {}
    for sample in samples:
        cut = sample.get("truncated") if isinstance(sample.get("truncated"), Mapping) else {}
        flags = {side: sample_flags(str(sample[side]), cut.get(side)) for side in sides if side in sample}
        for side, found in flags.items():
            totals[side] = totals.get(side, 0) + 1
            for flag in FLAGS:
                counts[flag][side] = counts[flag].get(side, 0) + (flag in found)
        out.append({**sample, "flags": flags})
    return out, {**counts, "of": totals}


def describe_counts(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """One line per flag, e.g. ``repetitive: 0 -> 2 of 3 answers``."""
    totals = counts.get("of") or {}
    lines = []
    for flag in FLAGS:
        per = counts.get(flag) or {}
        if "before" in per and "after" in per:
            lines.append(f"{flag}: {per['before']} -> {per['after']} of {totals.get('after', 0)} answers (before -> after)")
        elif per:
            side = next(iter(per))
            lines.append(f"{flag}: {per[side]} of {totals.get(side, 0)} answers")
    return lines
