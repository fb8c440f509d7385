"""Held-out examples that nearly copy a training example: the leak a plain run can still have.

The split engine puts exact copies on one side (lmforge.data.split), but a question asked twice with a
changed word, or a test file that overlaps the training file, lands on both sides, and the model is then
scored on what it was trained on. ``data.prepare`` removes such pairs (its ``dedup.across_splits``); a run
without it gets this check at the start, with the same detector and settings as that dedup pass
(:class:`lmforge.data.prepare.dedup.NearDuplicateIndex`: MinHash over character 5-grams of the
lower-cased, space-collapsed text, system prompts left out, estimated Jaccard >= 0.8).

Bounded cost: signatures cost about 0.4 us per character (measured on the 2-core AMD EPYC of
benchmarks/RESULTS.md: 2,000 texts of 300 characters indexed in 0.24 s), so at most ``TRAIN_CHARS``
characters of training text are indexed, from evenly spaced training examples when there are more (the
report then says it checked a sample), each text cut to ``TEXT_CHARS``, and at most ``HELD_OUT_EXAMPLES``
examples of each held-out part are looked up.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.data.formats import get_format
from lmforge.data.prepare.dedup import NearDuplicateIndex, dedup_key

THRESHOLD = 0.8  # data.prepare's dedup.threshold default
TRAIN_CHARS = 5_000_000
TEXT_CHARS = 2_000
HELD_OUT_EXAMPLES = 2_000


@dataclass
class NearCopies:
    """Held-out examples of one part with a near copy among the indexed training examples."""

    part: str
    checked: int  # held-out examples looked up
    found: int  # of those, with a near copy in train
    example: tuple[str, str] | None  # (held-out record's place, its training copy's place), the first found


def near_copies(train: list[dict], held_out: dict[str, list[dict]], data_format: str, *, seed: int = 0,
                train_chars: int = TRAIN_CHARS) -> tuple[list[NearCopies], int]:
    """(one :class:`NearCopies` per non-empty held-out part, how many training examples were indexed)."""
    spec = get_format(data_format)

    def text(record: dict) -> str:
        return dedup_key("\n".join(spec.strings(record, skip_roles=("system",))))[:TEXT_CHARS]

    total = sum(min(len(t), TEXT_CHARS) for r in train for t in spec.strings(r, skip_roles=("system",)))
    step = max(1, -(-total // train_chars))
    sample = train[::step]
    index = NearDuplicateIndex(threshold=THRESHOLD, seed=seed)
    for i, record in enumerate(sample):
        index.add(i, text(record))
    out = []
    for part, records in held_out.items():
        if not records:
            continue
        found, example = 0, None
        checked = records[:HELD_OUT_EXAMPLES]
        for record in checked:
            hit = index.find(text(record))
            if hit is not None:
                found += 1
                example = example or (str(record.get("_where", "?")), str(sample[hit].get("_where", "?")))
        out.append(NearCopies(part, len(checked), found, example))
    return out, len(sample)


def describe_near_copies(train: list[dict], held_out: dict[str, list[dict]], data_format: str, *, seed: int = 0,
                         train_chars: int = TRAIN_CHARS) -> list[str]:
    """The warning lines for :func:`near_copies` (none when no held-out example has a near copy in train)."""
    parts, indexed = near_copies(train, held_out, data_format, seed=seed, train_chars=train_chars)
    hits = [p for p in parts if p.found]
    if not hits:
        return []
    counts = ", ".join(f"{p.part} {p.found} of {p.checked}" for p in hits)
    held, copy = hits[0].example or ("?", "?")
    sampled = f" (checked against {indexed} of {len(train)} training examples)" if indexed < len(train) else ""
    return [f"near copies of training examples in held-out data: {counts}{sampled}, e.g. {held} ~ {copy} "
            f"(estimated Jaccard >= {THRESHOLD}); scores on them are optimistic. data.prepare's dedup drops the "
            "training copies (docs/data-prepare.md)"]
