"""Per-record cleaning stages: provenance, normalisation, personal data, quality filters, dedup.

Each stage takes and returns a list of canonical records and reports to a :class:`RuleLog`.
Examples written to the log pass through :func:`scrub` first, so the audit trail never holds
the personal data that the PII stage removes.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from lmforge.config.prepare import PII_TYPES, DedupConfig, FilterConfig, NormaliseConfig, PiiConfig
from lmforge.data.prepare.audit import RuleLog
from lmforge.data.prepare.dedup import NearDuplicateIndex, exact_hash
from lmforge.data.prepare.fields import check_record, content_text, joined_text, map_text, strings, where
from lmforge.data.prepare.filters import reject_reason
from lmforge.data.prepare.normalise import normalise_text
from lmforge.data.prepare.pii import detect, redact


def scrub(text: str) -> str:
    """``text`` with every detectable personal datum replaced by its typed placeholder."""
    return redact(text, detect(text, PII_TYPES))


def add_source(records: list[dict], data_format: str) -> list[dict]:
    """Validate each record and add ``_source`` (the file name of ``_where``) unless present."""
    out = []
    for record in records:
        check_record(record, data_format)
        if "_source" in record:
            out.append(record)
        else:
            out.append(dict(record, _source=PurePath(where(record).rsplit(":", 1)[0]).name))
    return out


def normalise_records(records: list[dict], data_format: str, cfg: NormaliseConfig, log: RuleLog) -> list[dict]:
    """Normalise the configured text fields of every record; log the ones that changed."""
    if not cfg.enabled:
        return records
    out = []
    for record in records:
        new = map_text(record, data_format, lambda s: normalise_text(s, cfg), cfg.fields)
        if strings(new, data_format) != strings(record, data_format):
            if log.wants("normalise"):
                log.changed("normalise", where(record), scrub(joined_text(record, data_format)), scrub(joined_text(new, data_format)))
            else:
                log.changed("normalise", where(record))
        out.append(new)
    return out


def redact_records(records: list[dict], data_format: str, cfg: PiiConfig, salt: str, log: RuleLog) -> list[dict]:
    """Detect personal data; replace it, drop the record, or only report it (``cfg.action``)."""
    if not cfg.enabled:
        return records
    out = []
    for record in records:
        found = [s for text in strings(record, data_format) for s in detect(text, cfg.types)]
        if not found:
            out.append(record)
            continue
        kinds = ", ".join(sorted({s.type for s in found}))
        if cfg.action == "drop":
            log.removed("pii_drop", where(record), f"found {kinds}")
            continue
        if cfg.action == "report":
            log.noted("pii_found", where(record), f"found {kinds}")
            out.append(record)
            continue
        new = map_text(record, data_format, lambda s: redact(s, detect(s, cfg.types), cfg.action, salt))
        log.changed("pii_redact", where(record), None, scrub(joined_text(new, data_format)) if log.wants("pii_redact") else None)
        for span in found:
            log.noted(f"pii_{span.type.lower()}", where(record), f"{span.type} redacted")
        out.append(new)
    return out


def filter_records(records: list[dict], data_format: str, cfg: FilterConfig, tokenizer: Any, log: RuleLog) -> list[dict]:
    """Drop empty, too short / too long and repetitive records (rule ``filter_<reason>``)."""
    if not cfg.enabled:
        return records
    out = []
    for record in records:
        text = joined_text(record, data_format)
        reason = reject_reason(text, cfg, tokenizer)
        if reason is None:
            out.append(record)
        else:
            rule = f"filter_{reason}"
            log.removed(rule, where(record), scrub(text) if log.wants(rule) else None)
    return out


def dedup_records(records: list[dict], data_format: str, cfg: DedupConfig, seed: int, log: RuleLog, split: str) -> list[dict]:
    """Keep the first of each exact / near-duplicate set (rules ``dedup_exact`` / ``dedup_near``)."""
    seen: dict[str, int] = {}
    index = NearDuplicateIndex(cfg.threshold, cfg.num_perm, cfg.shingle, seed) if cfg.near else None
    out: list[dict] = []
    for record in records:
        text = content_text(record, data_format)
        digest = exact_hash(text)
        if cfg.exact and digest in seen:
            log.removed("dedup_exact", where(record), f"{split}: same as {where(out[seen[digest]])}")
            continue
        if index is not None:
            sig = index.hasher.signature(text)
            match = index.find(text, sig)
            if match is not None:
                log.removed("dedup_near", where(record), f"{split}: near {where(out[match])}")
                continue
            index.add(len(out), text, sig)
        seen.setdefault(digest, len(out))
        out.append(record)
    return out


def drop_leaks(train: list[dict], held_out: list[dict], data_format: str, cfg: DedupConfig, seed: int, log: RuleLog) -> list[dict]:
    """Drop train records that equal (always) or nearly equal (``cfg.near``) a validation/test record.

    Rules ``leak_exact`` / ``leak_near``; the held-out copy stays. Off when ``cfg.across_splits`` is false.
    """
    if not cfg.across_splits or not held_out:
        return train
    texts = [content_text(r, data_format) for r in held_out]
    hashes = {exact_hash(t): i for i, t in enumerate(texts)}
    index = NearDuplicateIndex(cfg.threshold, cfg.num_perm, cfg.shingle, seed) if cfg.near else None
    for i, text in enumerate(texts if index is not None else []):
        index.add(i, text)
    out = []
    for record in train:
        text = content_text(record, data_format)
        if exact_hash(text) in hashes:
            log.removed("leak_exact", where(record), f"also held out at {where(held_out[hashes[exact_hash(text)]])}")
            continue
        match = index.find(text) if index is not None else None
        if match is not None:
            log.removed("leak_near", where(record), f"near held-out {where(held_out[match])}")
            continue
        out.append(record)
    return out
