"""What a run says about one task's data beyond its split counts, before it trains: exact copies inside held-out
parts, small held-out parts (counted in distinct examples), held-out examples that copy or nearly copy a training
example, and class labels that look like spellings of each other. Torch-free; lines to print, nothing written.

``lmforge train`` and ``lmforge data preview`` print these (lmforge.pipeline: the task object's ``describe``, per
task in a multi-task run). With ``data.prepare`` its own dedup and label check have dealt with near copies and
labels, so only the copies and sizes are said.
"""

from __future__ import annotations

from collections import Counter

from lmforge.data.formats import get_format
from lmforge.data.splits import HELD_OUT

SMALL = 50  # distinct held-out examples below which intervals get wide


def data_warnings(splits, data_format: str, *, prepared: bool) -> list[str]:
    """The lines (without indentation) for ``splits`` of ``data_format``; ``prepared``: data.prepare ran."""
    from lmforge.data.leakage import describe_near_copies

    out = []
    distinct = {p: distinct_records(getattr(splits, p), data_format) for p in HELD_OUT}
    copies = [f"{len(getattr(splits, p))} {p} examples are {distinct[p]} distinct" for p in HELD_OUT
              if distinct[p] < len(getattr(splits, p))]
    if copies:
        out.append(f"exact copies: {', '.join(copies)}; copies stay on one side of the split, and intervals and "
                   "before -> after tests count each distinct example once (data.prepare dedup drops copies: "
                   "docs/data-prepare.md)")
    small = [f"{p} {distinct[p]}" for p in HELD_OUT if 0 < distinct[p] < SMALL]
    if small:
        out.append(f"small data (distinct examples): {', '.join(small)}; intervals will be wide (shares: data.split)")
    others, lines = copies_of_train(splits, data_format)
    out += lines
    if not prepared:  # the near-copy check looks at what is not an exact copy already
        out += describe_near_copies(splits.train, others, data_format)
        out += label_warnings([*splits.train, *splits.validation, *splits.test])
    return out


def _key(record: dict, spec) -> str:
    """An example's identity: its text strings (what the split keeps on one side of the split)."""
    return "\n".join(spec.strings(record))


def copies_of_train(splits, data_format: str) -> tuple[dict[str, list[dict]], list[str]]:
    """(each held-out part without its exact copies of training examples, a warning line when there are such
    copies). The split keeps copies on one side, so these come from given data.validation / data.test files that
    overlap data.train (or are the same file)."""
    spec = get_format(data_format)
    train: dict[str, dict] = {}
    for record in splits.train:
        train.setdefault(_key(record, spec), record)
    others: dict[str, list[dict]] = {}
    found = []
    for part in HELD_OUT:
        records = getattr(splits, part)
        keys = [_key(r, spec) for r in records]
        others[part] = [r for r, k in zip(records, keys) if k not in train]
        hits = [(r, k) for r, k in zip(records, keys) if k in train]
        if hits:
            found.append((part, len(hits), len(records), hits[0]))
    if not found:
        return others, []
    counts = ", ".join(f"{part} {n} of {total}" for part, n, total, _ in found)
    first, key = found[0][3]
    where = f"{first.get('_where', '?')} = {train[key].get('_where', '?')}"
    return others, [f"held-out examples that are also training examples: {counts} (e.g. {where}); scores on "
                    "them measure memory, not the task. Give held-out files that do not overlap data.train, or "
                    "set data.prepare (its leak check drops the training copies)"]


def distinct_records(records: list[dict], data_format: str) -> int:
    """How many different examples ``records`` holds: by their text strings, the identity the split uses
    (exact copies fall on the same side) and, encoded, the evaluation's example ids."""
    spec = get_format(data_format)
    return len({_key(r, spec) for r in records})


def label_warnings(records: list[dict]) -> list[str]:
    """Warnings about class labels a plain run would train as they are: spellings of one label that became
    classes of their own ("Positive " next to "positive"; a rare "postive"), found as data.prepare's label
    check finds them (``infer_known`` at its default 2% rare share, ``resolve_label`` at its 0.8 typo cutoff),
    and classes with one example (it cannot be both learned and evaluated). Each names the labels, their
    counts and what to do."""
    from lmforge.data.prepare.labels import infer_known, resolve_label

    counts = Counter(str(r["label"]) for r in records if "label" in r)
    if len(counts) < 2:
        return []
    known = infer_known(counts, 0.02)
    out = []
    for label in sorted(counts):
        canonical, rule = resolve_label(label, known, 0.8)
        if rule in ("variant", "typo"):
            n = counts[label]
            out.append(f"labels: {label!r} ({n} example{'s' * (n != 1)}) looks like {canonical!r} "
                       f"({counts[canonical]}) and is trained as another class; fix the data, or let data.prepare's "
                       "label check fix it (docs/data-prepare.md)")
    single = sorted(label for label, n in counts.items() if n == 1)
    if single:
        out.append(f"labels with a single example: {', '.join(map(repr, single))}; a class needs examples to learn "
                   "from and to be evaluated on")
    return out
