"""Label checks for classification records: spelling variants, typos, unknown labels, conflicts.

:func:`check_labels` returns the kept records (labels fixed or records dropped per policy), the
list of changes for the audit log, and the class balance. Policy ``fail`` raises UserError naming
the first offending record's ``_where``.
"""

from __future__ import annotations

import difflib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from lmforge.config.prepare import LabelConfig
from lmforge.data.prepare.dedup import exact_key
from lmforge.data.prepare.fields import where
from lmforge.data.prepare.store import KeyTable
from lmforge.errors import UserError


@dataclass
class LabelReport:
    """What :func:`check_labels` did; ``events`` are (rule, record, detail) for the audit log."""

    known: list[str]
    balance: dict[str, int] = field(default_factory=dict)
    events: list[tuple[str, dict, str]] = field(default_factory=list)


def _squash(label: str) -> str:
    return " ".join(label.split()).casefold()


def infer_known(labels: Iterable[str] | Counter, rare_share: float) -> list[str]:
    """Labels that are not rare: per case/space variant group, the most frequent spelling.

    ``labels``: every record's label, or a Counter of them (what a streaming pass collects).
    """
    counts = labels if isinstance(labels, Counter) else Counter(labels)
    groups: dict[str, Counter] = defaultdict(Counter)
    for label, n in counts.items():
        groups[_squash(label)][label] += n
    total = max(1, sum(counts.values()))
    known = []
    for variants in groups.values():
        if sum(variants.values()) / total >= rare_share or len(groups) == 1:
            known.append(sorted(variants.items(), key=lambda kv: (-kv[1], kv[0]))[0][0])
    return sorted(known)


def resolve_label(label: str, known: list[str], cutoff: float) -> tuple[str | None, str]:
    """(canonical label or None, rule): "ok", "variant" (case/space), "typo" or "unknown"."""
    if label in known:
        return label, "ok"
    squashed = {_squash(k): k for k in known}
    if _squash(label) in squashed:
        return squashed[_squash(label)], "variant"
    close = difflib.get_close_matches(_squash(label), list(squashed), n=1, cutoff=cutoff)
    if close:
        return squashed[close[0]], "typo"
    return None, "unknown"


def _fail(rule: str, record: dict, detail: str) -> None:
    raise UserError(
        f"label problem ({rule}): {detail}",
        where=where(record),
        hint="fix the data, or set data.prepare.labels.policy to fix or drop",
    )


Event = Callable[[str, dict, str], None]


def resolve_records(records: Iterable[dict], cfg: LabelConfig, allowed: list[str], event: Event) -> Iterator[dict]:
    """Fix (policy ``fix``), drop or fail on label variants, typos and unknown labels, one record at a time.

    ``event(rule, record, detail)`` is called for each problem (rules ``label_variant``,
    ``label_typo``, ``label_unknown``); policy ``fail`` raises UserError naming the record.
    """
    for record in records:
        label, rule = resolve_label(record["label"], allowed, cfg.typo_cutoff)
        if rule == "ok":
            yield record
            continue
        detail = f"'{record['label']}' -> '{label}'" if label else f"'{record['label']}' is not one of {allowed}"
        if cfg.policy == "fail":
            _fail(f"label_{rule}", record, detail)
        event(f"label_{rule}", record, detail)
        if label is not None and cfg.policy == "fix":
            yield dict(record, label=label)


def text_key(record: dict) -> int:
    """64-bit key of a classification record's text (and pair), case and spacing ignored."""
    return exact_key(record["text"] + "\n" + (record.get("text_pair") or ""))


class ConflictVotes:
    """Label votes per text, collected in one pass: compact (one 64-bit key per distinct text).

    Only texts seen more than once get a vote counter, so memory grows with the duplicates.
    """

    def __init__(self) -> None:
        self._first = KeyTable()
        self._labels: dict[str, int] = {}
        self._names: list[str] = []
        self._repeats: dict[int, Counter] = {}

    def add(self, record: dict) -> None:
        """Count ``record``'s label for its text."""
        key, label = text_key(record), record["label"]
        index = self._labels.setdefault(label, len(self._labels))
        if index == len(self._names):
            self._names.append(label)
        seen = self._first.get([key])
        if seen:
            self._repeats.setdefault(key, Counter({self._names[seen[0]]: 1}))[label] += 1
        else:
            self._first.add([key], index)

    def conflicts(self) -> dict[int, Counter]:
        """Text key -> label votes, for the texts that carry more than one label."""
        return {k: v for k, v in self._repeats.items() if len(v) > 1}


def drop_conflicts(records: Iterable[dict], conflicts: dict[int, Counter], cfg: LabelConfig, event: Event) -> Iterator[dict]:
    """Same text (and pair) with different labels: ``fix`` keeps the majority label (a tie drops all),
    ``drop`` drops all, ``fail`` raises at the first such record. Rule ``label_conflict``."""
    for record in records:
        votes = conflicts.get(text_key(record)) if conflicts else None
        if votes is None:
            yield record
            continue
        detail = "same text labelled " + ", ".join(f"'{k}' x{v}" for k, v in sorted(votes.items()))
        if cfg.policy == "fail":
            _fail("label_conflict", record, detail)
        ranked = votes.most_common()
        winner = ranked[0][0] if cfg.policy == "fix" and ranked[0][1] > ranked[1][1] else None
        if record["label"] == winner:
            yield record
        else:
            event("label_conflict", record, detail)


def similar_labels(labels: list[str], cutoff: float) -> list[tuple[str, str]]:
    """Pairs of labels that look like spellings of each other ("other"/"othr")."""
    return [
        (a, b)
        for i, a in enumerate(labels)
        for b in labels[i + 1 :]
        if difflib.SequenceMatcher(None, _squash(a), _squash(b)).ratio() >= cutoff
    ]


def check_labels(records: list[dict], cfg: LabelConfig, known: list[str] | None = None) -> tuple[list[dict], LabelReport]:
    """List form of the label checks: fix/drop/fail variants, typos, unknown labels, then conflicts."""
    allowed = list(cfg.known or known or infer_known([r["label"] for r in records], cfg.rare_share))
    report = LabelReport(known=sorted(allowed))

    def event(rule: str, record: dict, detail: str) -> None:
        report.events.append((rule, record, detail))

    kept = list(resolve_records(records, cfg, allowed, event))
    if not (cfg.known or known):
        for a, b in similar_labels(allowed, cfg.typo_cutoff):
            first = next(r for r in kept if r["label"] == b)
            event("label_similar", first, f"'{a}' and '{b}' look alike; set labels.known to merge them")
    votes = ConflictVotes()
    for record in kept:
        votes.add(record)
    kept = list(drop_conflicts(kept, votes.conflicts(), cfg, event))
    report.balance = dict(sorted(Counter(r["label"] for r in kept).items()))
    return kept, report
