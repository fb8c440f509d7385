"""Label checks for classification records: spelling variants, typos, unknown labels, conflicts.

:func:`check_labels` returns the kept records (labels fixed or records dropped per policy), the
list of changes for the audit log, and the class balance. Policy ``fail`` raises UserError naming
the first offending record's ``_where``.
"""

from __future__ import annotations

import difflib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from lmforge.config.prepare import LabelConfig
from lmforge.data.prepare.dedup import dedup_key
from lmforge.data.prepare.fields import where
from lmforge.errors import UserError


@dataclass
class LabelReport:
    """What :func:`check_labels` did; ``events`` are (rule, record, detail) for the audit log."""

    known: list[str]
    balance: dict[str, int] = field(default_factory=dict)
    events: list[tuple[str, dict, str]] = field(default_factory=list)


def _squash(label: str) -> str:
    return " ".join(label.split()).casefold()


def infer_known(labels: list[str], rare_share: float) -> list[str]:
    """Labels that are not rare: per case/space variant group, the most frequent spelling."""
    groups: dict[str, Counter] = defaultdict(Counter)
    for label in labels:
        groups[_squash(label)][label] += 1
    total = max(1, len(labels))
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


def check_labels(records: list[dict], cfg: LabelConfig, known: list[str] | None = None) -> tuple[list[dict], LabelReport]:
    """Fix/drop/fail label variants, typos, unknown labels, then conflicting labels of one text."""
    allowed = list(cfg.known or known or infer_known([r["label"] for r in records], cfg.rare_share))
    report = LabelReport(known=sorted(allowed))
    kept: list[dict] = []
    for record in records:
        label, rule = resolve_label(record["label"], allowed, cfg.typo_cutoff)
        if rule == "ok":
            kept.append(record)
            continue
        detail = f"'{record['label']}' -> '{label}'" if label else f"'{record['label']}' is not one of {allowed}"
        if cfg.policy == "fail":
            _fail(f"label_{rule}", record, detail)
        report.events.append((f"label_{rule}", record, detail))
        if label is not None and cfg.policy == "fix":
            kept.append(dict(record, label=label))
    if not (cfg.known or known):
        _note_similar(kept, allowed, cfg.typo_cutoff, report)
    kept = _resolve_conflicts(kept, cfg, report)
    report.balance = dict(sorted(Counter(r["label"] for r in kept).items()))
    return kept, report


def _note_similar(records: list[dict], labels: list[str], cutoff: float, report: LabelReport) -> None:
    """Inferred labels that look like spellings of each other ("other"/"othr"): reported, not changed."""
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if difflib.SequenceMatcher(None, _squash(a), _squash(b)).ratio() >= cutoff:
                first = next(r for r in records if r["label"] == b)
                report.events.append(("label_similar", first, f"'{a}' and '{b}' look alike; set labels.known to merge them"))


def _resolve_conflicts(records: list[dict], cfg: LabelConfig, report: LabelReport) -> list[dict]:
    """Same text (and pair) with different labels: fix -> majority label wins (tie: drop all)."""
    by_text: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_text[dedup_key(r["text"] + "\n" + (r.get("text_pair") or ""))].append(i)
    drop: set[int] = set()
    for indices in by_text.values():
        votes = Counter(records[i]["label"] for i in indices)
        if len(votes) < 2:
            continue
        first = records[indices[0]]
        detail = "same text labelled " + ", ".join(f"'{k}' x{v}" for k, v in sorted(votes.items()))
        if cfg.policy == "fail":
            _fail("label_conflict", first, detail)
        ranked = votes.most_common()
        winner = ranked[0][0] if cfg.policy == "fix" and ranked[0][1] > ranked[1][1] else None
        for i in indices:
            if records[i]["label"] != winner:
                drop.add(i)
                report.events.append(("label_conflict", records[i], detail))
    return [r for i, r in enumerate(records) if i not in drop]
