"""Held-out examples that nearly copy a training example: the leak a plain run can still have.

The split engine puts exact copies on one side (lmforge.data.split), but a question asked twice with a
changed word, or a test file that overlaps the training file, lands on both sides, and the model is then
scored on what it was trained on. ``data.prepare`` removes such pairs (its ``dedup.across_splits``); a run
without it gets this check at the start, with the same detector and settings as that dedup pass
(:class:`lmforge.data.prepare.dedup.MinHasher`, 128 hashes over character 5-grams of the lower-cased,
space-collapsed text, banded LSH, system prompts left out, estimated Jaccard >= 0.8), kept in memory: nothing
is written, not even a temporary file.

Bounded cost: signatures cost about 0.4 us per character (measured on the 2-core AMD EPYC of
benchmarks/RESULTS.md: 2,000 texts of 300 characters indexed in 0.24 s), so at most ``TRAIN_CHARS``
characters and ``TRAIN_EXAMPLES`` training examples are indexed, evenly spaced when there are more (the report
then says it checked a sample), each text cut to ``TEXT_CHARS``, and at most ``HELD_OUT_EXAMPLES`` examples of
each held-out part are looked up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmforge.data.formats import get_format
from lmforge.data.prepare.dedup import MinHasher, dedup_key, lsh_bands

THRESHOLD = 0.8  # data.prepare's dedup.threshold default
NUM_PERM, SHINGLE = 128, 5  # data.prepare's dedup.num_perm and dedup.shingle defaults
TRAIN_CHARS = 5_000_000
TRAIN_EXAMPLES = 50_000
TEXT_CHARS = 2_000
HELD_OUT_EXAMPLES = 2_000


@dataclass
class NearCopies:
    """Held-out examples of one part with a near copy among the indexed training examples."""

    part: str
    checked: int  # held-out examples looked up
    found: int  # of those, with a near copy in train
    example: tuple[str, str] | None  # (held-out record's place, its training copy's place), the first found


class _BandIndex:
    """Banded LSH over MinHash signatures, in memory (data.prepare's NearDuplicateIndex streams to a temporary
    file; a check at the start of a run writes nothing): one sorted uint64 key array per band, looked up with
    ``searchsorted``, candidates verified on the whole signature. ~0.5 KB per indexed text."""

    def __init__(self, signatures: np.ndarray):
        self.signatures = signatures
        self.bands, self.rows = lsh_bands(signatures.shape[1], THRESHOLD)
        keys = self._keys(signatures)
        self.order = np.argsort(keys, axis=0, kind="stable")
        self.sorted = np.take_along_axis(keys, self.order, axis=0)

    def _keys(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) uint64: each band's rows folded into one key (a polynomial in a fixed odd multiplier)."""
        block = signatures[:, : self.bands * self.rows].astype(np.uint64).reshape(len(signatures), self.bands, self.rows)
        powers = np.uint64(1099511628211) ** np.arange(self.rows, dtype=np.uint64)
        with np.errstate(over="ignore"):
            return (block * powers).sum(axis=2, dtype=np.uint64)

    def find(self, signature: np.ndarray) -> int | None:
        """Index of the most similar indexed signature with estimated Jaccard >= THRESHOLD (lowest index on a
        tie), else None."""
        keys = self._keys(signature[None, :])[0]
        found = [self.order[np.searchsorted(self.sorted[:, b], k, "left"):np.searchsorted(self.sorted[:, b], k, "right"), b]
                 for b, k in enumerate(keys)]
        candidates = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
        if candidates.size == 0:
            return None
        sims = (self.signatures[candidates] == signature[None, :]).mean(axis=1)
        if sims.max() < THRESHOLD:
            return None
        return int(candidates[np.flatnonzero(sims == sims.max())[0]])


def near_copies(train: list[dict], held_out: dict[str, list[dict]], data_format: str, *,
                train_chars: int = TRAIN_CHARS) -> tuple[list[NearCopies], int]:
    """(one :class:`NearCopies` per non-empty held-out part, how many training examples were indexed)."""
    spec = get_format(data_format)
    hasher = MinHasher(NUM_PERM, SHINGLE, seed=0)

    def text(record: dict) -> str:
        return dedup_key("\n".join(spec.strings(record, skip_roles=("system",))))[:TEXT_CHARS]

    texts = [text(r) for r in train]  # cheap next to a signature; the sample is chosen by their lengths
    step = max(1, -(-sum(map(len, texts)) // train_chars), -(-len(train) // TRAIN_EXAMPLES))
    sample = train[::step]
    if not sample:
        return [], 0
    index = _BandIndex(np.stack([hasher.signature(t) for t in texts[::step]]))
    out = []
    for part, records in held_out.items():
        if not records:
            continue
        found, example = 0, None
        checked = records[:HELD_OUT_EXAMPLES]
        for record in checked:
            hit = index.find(hasher.signature(text(record)))
            if hit is not None:
                found += 1
                example = example or (str(record.get("_where", "?")), str(sample[hit].get("_where", "?")))
        out.append(NearCopies(part, len(checked), found, example))
    return out, len(sample)


def describe_near_copies(train: list[dict], held_out: dict[str, list[dict]], data_format: str, *,
                         train_chars: int = TRAIN_CHARS) -> list[str]:
    """The warning lines for :func:`near_copies` (none when no held-out example has a near copy in train)."""
    parts, indexed = near_copies(train, held_out, data_format, train_chars=train_chars)
    hits = [p for p in parts if p.found]
    if not hits:
        return []
    counts = ", ".join(f"{p.part} {p.found} of {p.checked}" for p in hits)
    held, copy = hits[0].example or ("?", "?")
    sampled = f" (checked against {indexed} of {len(train)} training examples)" if indexed < len(train) else ""
    return [f"near copies of training examples in held-out data: {counts}{sampled}, e.g. {held} ~ {copy} "
            f"(estimated Jaccard >= {THRESHOLD}); scores on them are optimistic. data.prepare's dedup drops the "
            "training copies (docs/data-prepare.md)"]
