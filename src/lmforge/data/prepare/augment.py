"""Seeded train-set augmentation: class rebalancing by oversampling, EDA-style text edits.

EDA (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques"): synonym replacement from a
small built-in map, random swap and random deletion. Texts shorter than ``min_words`` are left
unchanged (no copy is made). Augmented copies carry ``_augmented`` (the operation) and the
original's ``_where``. EDA applies to the ``text`` field of text and classification records;
model paraphrases (:mod:`lmforge.data.prepare.paraphrase`) also to the ``instruction`` of
instruction records. Oversampling copies whole records.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Callable, Iterable, Iterator, Sequence

from lmforge.data.formats import get_format
from lmforge.config.prepare import AugmentConfig

SYNONYMS: dict[str, tuple[str, ...]] = {
    "good": ("fine", "nice", "decent"), "great": ("excellent", "superb", "wonderful"),
    "bad": ("poor", "awful", "terrible"), "big": ("large", "huge"), "small": ("little", "tiny"),
    "fast": ("quick", "rapid"), "slow": ("sluggish", "unhurried"), "happy": ("glad", "pleased"),
    "sad": ("unhappy", "gloomy"), "buy": ("purchase", "get"), "like": ("enjoy", "appreciate"),
    "love": ("adore", "cherish"), "hate": ("dislike", "detest"), "tasty": ("delicious", "flavorful"),
    "cheap": ("inexpensive", "affordable"), "expensive": ("costly", "pricey"), "product": ("item", "article"),
    "use": ("utilize", "employ"), "make": ("create", "produce"), "easy": ("simple", "effortless"),
    "hard": ("difficult", "tough"), "quickly": ("rapidly", "swiftly"), "really": ("truly", "very"),
    "very": ("extremely", "really"), "help": ("assist", "aid"), "start": ("begin", "commence"),
    "end": ("finish", "conclude"), "show": ("display", "present"), "think": ("believe", "feel"),
    "price": ("cost", "charge"), "problem": ("issue", "trouble"), "nice": ("pleasant", "lovely"),
}


def synonym_replace(words: list[str], rng: random.Random, n: int) -> list[str]:
    """Replace up to ``n`` words that have a synonym in :data:`SYNONYMS` (case of the first letter kept)."""
    out = list(words)
    spots = [i for i, w in enumerate(words) if w.lower() in SYNONYMS]
    for i in rng.sample(spots, min(n, len(spots))):
        new = rng.choice(SYNONYMS[words[i].lower()])
        out[i] = new.capitalize() if words[i][:1].isupper() else new
    return out


def random_swap(words: list[str], rng: random.Random, n: int) -> list[str]:
    """Swap two random positions ``n`` times."""
    out = list(words)
    for _ in range(n):
        i, j = rng.randrange(len(out)), rng.randrange(len(out))
        out[i], out[j] = out[j], out[i]
    return out


def random_delete(words: list[str], rng: random.Random, rate: float) -> list[str]:
    """Delete each word with probability ``rate``; never returns an empty list."""
    out = [w for w in words if rng.random() >= rate]
    return out or [rng.choice(words)]


def eda_variant(text: str, rng: random.Random, cfg: AugmentConfig) -> tuple[str, str] | None:
    """(new text, operation) or None when the text is too short to augment safely."""
    words = text.split()
    if len(words) < cfg.min_words:
        return None
    n = max(1, round(cfg.rate * len(words)))
    op = rng.choice(("synonym", "swap", "delete"))
    if op == "synonym":
        new = synonym_replace(words, rng, n)
        if new == words:
            op, new = "swap", random_swap(words, rng, n)
    elif op == "swap":
        new = random_swap(words, rng, n)
    else:
        new = random_delete(words, rng, cfg.rate)
    return " ".join(new), op


def oversample(records: list[dict], rng: random.Random) -> list[dict]:
    """Copies of minority-class records (``_augmented: "oversample"``) up to the largest class size."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_label[r["label"]].append(i)
    return [dict(records[i], _augmented="oversample") for i in oversample_picks(by_label, rng)]


def oversample_picks(positions: dict[str, Sequence[int]], rng: random.Random) -> list[int]:
    """Positions to copy so every label reaches the largest class size (labels in sorted order)."""
    target = max((len(v) for v in positions.values()), default=0)
    picks: list[int] = []
    for label in sorted(positions):
        group = positions[label]
        picks += [group[rng.randrange(len(group))] for _ in range(target - len(group))]
    return picks


class Augmenter:
    """Seeded text augmentation of a train stream: EDA copies and model paraphrases.

    :meth:`extras` takes the train records (in order) and yields the new copies, batch by batch
    (``paraphrase.batch_size``): EDA copies of each record, then the paraphrases of the batch.
    ``paraphrase(texts) -> [[str, ...], ...]`` is the model-backed callable
    (:class:`~lmforge.data.prepare.paraphrase.ModelParaphraser`); it must be given when
    ``cfg.paraphrase`` is set. ``counts`` holds the copies made per operation.
    """

    def __init__(self, data_format: str, cfg: AugmentConfig, seed: int, paraphrase: Callable[[list[str]], list[list[str]]] | None = None):
        self.data_format, self.cfg = data_format, cfg
        self.rng = random.Random(seed)
        self.counts: Counter = Counter()
        self.spec = get_format(data_format)
        self.field = self.spec.augment_field
        self.paraphrase = paraphrase if cfg.paraphrase is not None and self.field is not None else None

    def _eda(self, record: dict) -> list[dict]:
        out = []
        for _ in range(self.cfg.copies):
            variant = eda_variant(record["text"], self.rng, self.cfg)
            if variant is None:
                self.counts["eda_skipped_short"] += 1
                break
            out.append(dict(record, text=variant[0], _augmented=variant[1]))
            self.counts[f"eda_{variant[1]}"] += 1
        return out

    def _paraphrases(self, batch: list[dict]) -> list[dict]:
        assert self.paraphrase is not None and self.cfg.paraphrase is not None
        field = self.field
        todo = [r for r in batch if len(str(r[field]).split()) >= self.cfg.paraphrase.min_words]
        self.counts["paraphrase_skipped_short"] += len(batch) - len(todo)
        out = []
        for record, texts in zip(todo, self.paraphrase([r[field] for r in todo]) if todo else []):
            out += [dict(record, **{field: t}, _augmented="paraphrase") for t in texts]
            self.counts["paraphrase"] += len(texts)
        return out

    def extras(self, records: Iterable[dict]) -> Iterator[dict]:
        """The augmented copies of ``records`` (EDA, then paraphrases), in a fixed order."""
        eda = self.cfg.eda and self.spec.kind in ("text", "labelled")  # kinds whose canonical string is "text"
        size = self.cfg.paraphrase.batch_size if self.paraphrase is not None else 1
        batch: list[dict] = []
        for record in records:
            batch.append(record)
            if eda:
                yield from self._eda(record)
            if len(batch) >= size:
                if self.paraphrase is not None:
                    yield from self._paraphrases(batch)
                batch = []
        if batch and self.paraphrase is not None:
            yield from self._paraphrases(batch)


def augment_records(records: list[dict], data_format: str, cfg: AugmentConfig, seed: int, paraphrase=None) -> tuple[list[dict], Counter]:
    """Train records plus augmented copies (appended after the originals) and counts per operation."""
    augmenter = Augmenter(data_format, cfg, seed, paraphrase)
    extra = list(augmenter.extras(records))
    if cfg.oversample and get_format(data_format).label:
        copies = oversample(records + extra, augmenter.rng)
        augmenter.counts["oversample"] += len(copies)
        extra += copies
    return records + extra, augmenter.counts
