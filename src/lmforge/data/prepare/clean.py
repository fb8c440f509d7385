"""Per-record cleaning stages: provenance, normalisation, personal data, quality filters, dedup.

Each stage is a generator over canonical records (one record in memory at a time) that reports
to a :class:`RuleLog`; duplicate and leak checks are objects holding compact per-example state
(64-bit hashes, LSH band keys; signatures and ``_where`` strings on disk). Examples written to
the log pass through :func:`scrub` first, so the audit trail never holds the personal data that
the PII stage removes.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from lmforge.config.prepare import PII_TYPES, DedupConfig, FilterConfig, NormaliseConfig, PiiConfig
from lmforge.data.prepare.audit import RuleLog
from lmforge.data.prepare.dedup import NearDuplicateIndex, exact_key
from lmforge.data.prepare.fields import check_record, content_text, joined_text, map_text, strings, where
from lmforge.data.prepare.filters import reject_reason
from lmforge.data.prepare.language import language_reason
from lmforge.data.prepare.normalise import normalise_text
from lmforge.data.prepare.pii import TermList, detect, redact
from lmforge.data.prepare.store import DiskStore, KeyTable

if TYPE_CHECKING:
    import numpy as np


def scrub(text: str, terms: TermList | None = None) -> str:
    """``text`` with every detectable personal datum (and the user's listed ``terms``) replaced by its placeholder."""
    return redact(text, detect(text, PII_TYPES, terms))


def add_source(records: Iterable[dict], data_format: str) -> Iterator[dict]:
    """Validate each record and add ``_source`` (the file name of ``_where``) unless present."""
    for record in records:
        check_record(record, data_format)
        if "_source" in record:
            yield record
        else:
            yield dict(record, _source=PurePath(where(record).rsplit(":", 1)[0]).name)


def normalise_records(records: Iterable[dict], data_format: str, cfg: NormaliseConfig, log: RuleLog,
                      terms: TermList | None = None) -> Iterator[dict]:
    """Normalise the configured text fields of every record; log the ones that changed (scrubbed of ``terms`` too)."""
    if not cfg.enabled:
        yield from records
        return
    for record in records:
        new = map_text(record, data_format, lambda s: normalise_text(s, cfg), cfg.fields)
        if strings(new, data_format) != strings(record, data_format):
            if log.wants("normalise"):
                log.changed("normalise", where(record), scrub(joined_text(record, data_format), terms),
                            scrub(joined_text(new, data_format), terms))
            else:
                log.changed("normalise", where(record))
        yield new


def redact_records(records: Iterable[dict], data_format: str, cfg: PiiConfig, salt: str, log: RuleLog,
                   terms: TermList | None = None) -> Iterator[dict]:
    """Detect personal data and the user's listed ``terms`` (``cfg.terms``, read by
    :func:`~lmforge.data.prepare.pii.load_terms`); replace it, drop the record, or only report it (``cfg.action``)."""
    if not cfg.enabled:
        yield from records
        return
    for record in records:
        found = [s for text in strings(record, data_format) for s in detect(text, cfg.types, terms)]
        if not found:
            yield record
            continue
        kinds = ", ".join(sorted({s.type for s in found}))
        if cfg.action == "drop":
            log.removed("pii_drop", where(record), f"found {kinds}")
            continue
        if cfg.action == "report":
            log.noted("pii_found", where(record), f"found {kinds}")
            yield record
            continue
        new = map_text(record, data_format, lambda s: redact(s, detect(s, cfg.types, terms), cfg.action, salt))
        log.changed("pii_redact", where(record), None,
                    scrub(joined_text(new, data_format), terms) if log.wants("pii_redact") else None)
        for span in found:
            log.noted(f"pii_{span.type.lower()}", where(record), f"{span.type} redacted")
        yield new


def filter_records(records: Iterable[dict], data_format: str, cfg: FilterConfig, tokenizer: Any, log: RuleLog,
                   terms: TermList | None = None) -> Iterator[dict]:
    """Drop empty, too short / too long, repetitive and (``cfg.languages``) other-language records (``filter_<reason>``)."""
    if not cfg.enabled:
        yield from records
        return
    for record in records:
        text = joined_text(record, data_format)
        reason, found = reject_reason(text, cfg, tokenizer), None
        if reason is None and cfg.languages:
            found = language_reason(text, cfg)
            reason = "language" if found else None
        if reason is None:
            yield record
            continue
        rule = f"filter_{reason}"
        detail = (f"{found}: " if found else "") + scrub(text, terms) if log.wants(rule) else None
        log.removed(rule, where(record), detail)


class Deduplicator:
    """Keeps the first of each exact / near-duplicate set seen through :meth:`keep`.

    State per kept example: one 64-bit hash, the LSH band keys and, on disk, its signature and
    ``_where`` (for the audit detail "same as file:line"). Rules ``dedup_exact`` / ``dedup_near``.
    """

    def __init__(self, data_format: str, cfg: DedupConfig, seed: int, log: RuleLog, split: str, folder: str | None = None):
        self.data_format, self.cfg, self.log, self.split = data_format, cfg, log, split
        self._exact = KeyTable()
        self._near = NearDuplicateIndex(cfg.threshold, cfg.num_perm, cfg.shingle, seed, folder) if cfg.near else None
        self._wheres = DiskStore(folder)

    def keep(self, record: dict) -> bool:
        """True for a record not (nearly) equal to one kept before; logs the ones it drops."""
        text = content_text(record, self.data_format)
        key = exact_key(text)
        if self.cfg.exact:
            same = self._exact.get([key])
            if same:
                self.log.removed("dedup_exact", where(record), f"{self.split}: same as {self._where(same[0])}")
                return False
        sig = None
        if self._near is not None:
            sig = self._near.hasher.signature(text)
            match = self._near.find(text, sig)
            if match is not None:
                self.log.removed("dedup_near", where(record), f"{self.split}: near {self._where(match)}")
                return False
        item = self._wheres.append(where(record).encode("utf-8"))
        if self._near is not None:
            self._near.add(item, text, sig)
        self._exact.add([key], item)
        return True

    def signature(self, kept: int) -> "np.ndarray | None":
        """MinHash signature of the ``kept``-th kept record (0-based), read back from disk; None without near dedup.

        Lets the leak check reuse it instead of hashing every train text a second time.
        """
        return self._near.stored_signature(kept) if self._near is not None else None

    def _where(self, item: int) -> str:
        return self._wheres.get(item).decode("utf-8")


class LeakIndex:
    """Validation/test examples, indexed so that train copies of them can be found and dropped.

    :meth:`add` every held-out record first, then :meth:`leaks` for each train record: True
    (and logged as ``leak_exact`` / ``leak_near``) when it equals or nearly equals a held-out one.
    """

    def __init__(self, data_format: str, cfg: DedupConfig, seed: int, log: RuleLog, folder: str | None = None):
        self.data_format, self.log = data_format, log
        self.enabled = cfg.across_splits
        self._exact = KeyTable()
        self._near = NearDuplicateIndex(cfg.threshold, cfg.num_perm, cfg.shingle, seed, folder) if cfg.near else None
        self._wheres = DiskStore(folder)

    def add(self, record: dict) -> None:
        """Index one held-out record."""
        if not self.enabled:
            return
        text = content_text(record, self.data_format)
        item = self._wheres.append(where(record).encode("utf-8"))
        self._exact.add([exact_key(text)], item)
        if self._near is not None:
            self._near.add(item, text)

    def leaks(self, record: dict, sig: "np.ndarray | None" = None) -> bool:
        """True when the train ``record`` equals or nearly equals a held-out record (logged).

        ``sig``: the record's MinHash signature when already computed with the same settings.
        """
        if not self.enabled or not len(self._wheres):
            return False
        text = content_text(record, self.data_format)
        same = self._exact.get([exact_key(text)])
        if same:
            self.log.removed("leak_exact", where(record), f"also held out at {self._wheres.get(same[0]).decode()}")
            return True
        match = self._near.find(text, sig) if self._near is not None else None
        if match is not None:
            self.log.removed("leak_near", where(record), f"near held-out {self._wheres.get(match).decode()}")
            return True
        return False
