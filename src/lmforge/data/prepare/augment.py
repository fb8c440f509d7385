"""Seeded train-set augmentation: class rebalancing by oversampling, EDA-style text edits.

EDA (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques"): synonym replacement from a
small built-in map, random swap and random deletion. Texts shorter than ``min_words`` are left
unchanged (no copy is made). Augmented copies carry ``_augmented`` (the operation) and the
original's ``_where``. Applies to the ``text`` field of text and classification records.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

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
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_label[r["label"]].append(r)
    target = max((len(v) for v in by_label.values()), default=0)
    extra = []
    for label in sorted(by_label):
        group = by_label[label]
        extra += [dict(rng.choice(group), _augmented="oversample") for _ in range(target - len(group))]
    return extra


def augment_records(records: list[dict], data_format: str, cfg: AugmentConfig, seed: int) -> tuple[list[dict], Counter]:
    """Train records plus augmented copies (appended after the originals) and counts per operation."""
    rng = random.Random(seed)
    counts: Counter = Counter()
    extra: list[dict] = []
    if cfg.eda and data_format in ("text", "classification"):
        for r in records:
            for _ in range(cfg.copies):
                variant = eda_variant(r["text"], rng, cfg)
                if variant is None:
                    counts["eda_skipped_short"] += 1
                    break
                extra.append(dict(r, text=variant[0], _augmented=variant[1]))
                counts[f"eda_{variant[1]}"] += 1
    if cfg.oversample and data_format == "classification":
        copies = oversample(records + extra, rng)
        counts["oversample"] += len(copies)
        extra += copies
    return records + extra, counts
