"""``run_prepare``: canonical records -> cleaned, deduplicated, redacted, split JSONL + audit trail.

Streaming, in bounded memory: records flow one at a time through validate + tag source ->
normalise -> personal data -> filter (incl. language) into a spool file on disk; classification
labels are checked in a second pass (known labels and conflicting texts need counts first);
exact + near duplicates are removed while each kept example gets a split rank; a third pass
writes validation/test and indexes them, a fourth writes train minus the copies of held-out
examples (leaks) plus the augmented copies. What stays in memory is compact per-example state
(64-bit hashes, LSH band keys, a split rank, a length), counters and a few examples per rule;
MinHash signatures, ``_where`` strings and the spools live in a work folder beside ``out_dir``
that is removed at the end. ``train/validation/test.jsonl`` are moved into ``out_dir`` only when
everything succeeded; ``manifest.json``, ``report.md`` and ``report.html`` are written atomically.
Same records, config and seed give byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from lmforge.atomic import publish_dir
from lmforge.config.prepare import PrepareConfig
from lmforge.config.schema import SplitConfig
from lmforge.data.formats import get_format
from lmforge.data.prepare import clean
from lmforge.data.prepare.audit import RuleLog, library_versions, sha256_file, write_manifest, write_report
from lmforge.data.prepare.augment import Augmenter, oversample_picks
from lmforge.data.prepare.fields import joined_text
from lmforge.data.prepare.filters import length_of
from lmforge.data.prepare.html_report import write_html
from lmforge.data.prepare.pii import TermList, load_terms
from lmforge.data.prepare.labels import ConflictVotes, drop_conflicts, infer_known, resolve_records, similar_labels
from lmforge.data.split import TRAIN, VALIDATION, SplitPlan
from lmforge.data.prepare.store import read_jsonl, spool, write_jsonl
from lmforge.errors import UserError, storage_error
from lmforge.outputs import read_marker, write_marker

SPLITS = ("train", "validation", "test")
Held = dict  # "validation" / "test" -> records (None: carved out of train)
Paraphrase = Callable[[list[str]], list[list[str]]]


@dataclass(frozen=True)
class PrepareResult:
    """Where the prepared splits and the audit files are; ``train`` etc. read a split back as a list."""

    out_dir: Path
    counts: dict[str, int]
    manifest_path: Path
    report_path: Path
    rules: dict[str, dict] = field(default_factory=dict)  # the manifest's per-rule counts (and examples)

    def records(self, split: str) -> Iterator[dict]:
        """The records of ``split`` ("train", "validation", "test"), streamed from its JSONL file."""
        return read_jsonl(self.out_dir / f"{split}.jsonl")

    @property
    def train(self) -> list[dict]:
        return list(self.records("train"))

    @property
    def validation(self) -> list[dict]:
        return list(self.records("validation"))

    @property
    def test(self) -> list[dict]:
        return list(self.records("test"))


@dataclass
class _Run:
    """One run's fixed inputs, its rule log and its work folder."""

    data_format: str
    cfg: PrepareConfig
    split: SplitConfig
    seed: int
    tokenizer: Any
    log: RuleLog
    work: Path
    terms: TermList | None = None  # the user's own lists to redact (pii.terms), read once

    def path(self, name: str) -> Path:
        return self.work / name


def _clean(run: _Run, records: Iterable[dict], name: str) -> tuple[Path, Counter]:
    """Per-record rules into the spool ``<name>.clean.jsonl``; returns it and the label counts."""
    cfg, fmt = run.cfg, run.data_format
    terms = run.terms
    stream = clean.add_source(records, fmt)
    stream = clean.normalise_records(stream, fmt, cfg.normalise, run.log, terms)
    stream = clean.redact_records(stream, fmt, cfg.pii, str(run.seed), run.log, terms)
    stream = clean.filter_records(stream, fmt, cfg.filter, run.tokenizer, run.log, terms)
    labels: Counter = Counter()
    label = get_format(fmt).label

    def counted() -> Iterator[dict]:
        for record in stream:
            if label:
                labels[record[label]] += 1
            yield record

    path = run.path(f"{name}.clean.jsonl")
    spool(counted(), path)
    return path, labels


def _label_event(run: _Run) -> Callable[[str, dict, str], None]:
    def event(rule: str, record: dict, detail: str) -> None:
        where = str(record.get("_where", "?"))
        if rule == "label_similar":
            run.log.noted(rule, where, detail)
        elif run.cfg.labels.policy == "fix" and rule not in ("label_conflict", "label_unknown"):
            run.log.changed(rule, where, None, detail)
        else:
            run.log.removed(rule, where, detail)

    return event


def _labels(run: _Run, path: Path, allowed: list[str], inferred: bool) -> Iterator[dict]:
    """Label checks of a cleaned spool: resolve into a second spool, then drop conflicting texts."""
    cfg, event = run.cfg.labels, _label_event(run)
    votes, first_where = ConflictVotes(), {}

    def resolved() -> Iterator[dict]:
        for record in resolve_records(read_jsonl(path), cfg, allowed, event):
            votes.add(record)
            first_where.setdefault(record["label"], record)
            yield record

    labelled = path.with_suffix(".labels.jsonl")
    spool(resolved(), labelled)
    if inferred:
        for a, b in similar_labels(allowed, cfg.typo_cutoff):
            if b in first_where:
                event("label_similar", first_where[b], f"'{a}' and '{b}' look alike; set labels.known to merge them")
    return drop_conflicts(read_jsonl(labelled), votes.conflicts(), cfg, event)


def _checked(run: _Run, records: Iterable[dict], held: Held) -> tuple[Iterator[dict], Held]:
    """Cleaned (and, for classification, label-checked) train and held-out (validation / test) streams."""
    train_path, counts = _clean(run, records, "train")
    held_paths = {part: _clean(run, stream, part)[0] for part, stream in held.items() if stream is not None}
    if get_format(run.data_format).label is None:
        return read_jsonl(train_path), {part: read_jsonl(path) for part, path in held_paths.items()}
    allowed = list(run.cfg.labels.known or infer_known(counts, run.cfg.labels.rare_share))
    train = _labels(run, train_path, allowed, run.cfg.labels.known is None)
    return train, {part: _labels(run, path, allowed, False) for part, path in held_paths.items()}


def _split_plan(run: _Run, held: Held) -> SplitPlan:
    """The run's split (data.split); a held-out part the user gave as its own source is not carved."""
    shares = {part: 0.0 if held.get(part) is not None else getattr(run.split, part) for part in ("validation", "test")}
    return SplitPlan(run.split, run.seed, run.data_format, **shares)


def _dedup_and_split(
    run: _Run, train: Iterator[dict], held: Held, out: dict[str, Any], leaks: clean.LeakIndex
) -> tuple[Path, SplitPlan, clean.Deduplicator]:
    """Deduplicate train (spooled, ranked for the split) and the user's own validation / test sets."""
    fmt, dcfg = run.data_format, run.cfg.dedup
    plan = _split_plan(run, held)
    keeper = clean.Deduplicator(fmt, dcfg, run.seed, run.log, "train", str(run.work))

    def kept() -> Iterator[dict]:
        for record in train:
            if keeper.keep(record):
                plan.add(record)
                yield record

    path = run.path("train.kept.jsonl")
    spool(kept(), path)
    for part, stream in held.items():
        if stream is None:
            continue
        held_keeper = clean.Deduplicator(fmt, dcfg, run.seed, run.log, part, str(run.work))
        for record in stream:
            if held_keeper.keep(record):
                write_jsonl(out[part], record)
                leaks.add(record)
                out["counts"][part] += 1
    plan.finish()
    return path, plan, keeper


def _write_train(
    run: _Run, kept: Path, plan: SplitPlan, leaks: clean.LeakIndex, keeper: clean.Deduplicator, paraphrase: Paraphrase | None
) -> tuple[array, dict[str, int], int]:
    """train.jsonl: kept train records minus leaks, then augmented copies. Returns lengths, balance, count."""
    fmt, path = run.data_format, run.path("train.jsonl")
    augmenter = Augmenter(fmt, run.cfg.augment, run.seed, paraphrase)
    lengths, offsets = array("q"), array("q")
    extras_path = run.path("train.extras.jsonl")
    with open(path, "w", encoding="utf-8") as fh, open(extras_path, "w", encoding="utf-8") as extras:

        def originals() -> Iterator[dict]:
            for i, record in enumerate(read_jsonl(kept)):
                if plan.side(i) == TRAIN and not leaks.leaks(record, keeper.signature(i)):
                    offsets.append(fh.tell())
                    write_jsonl(fh, record)
                    yield record

        for extra in augmenter.extras(originals()):
            write_jsonl(extras, extra)
    with open(path, "a", encoding="utf-8") as fh:
        for record in read_jsonl(extras_path):
            offsets.append(fh.tell())
            write_jsonl(fh, record)
    label = get_format(fmt).label
    if run.cfg.augment.oversample and label:
        _oversample(path, offsets, augmenter)
    for op, n in sorted(augmenter.counts.items()):
        run.log.rules[f"augment_{op}"] = {"changed": 0, "removed": 0, "found": n, "examples": []}
    balance: Counter = Counter()
    for record in read_jsonl(path):
        lengths.append(length_of(joined_text(record, fmt), run.tokenizer))
        if label:
            balance[record[label]] += 1
    return lengths, dict(sorted(balance.items())), len(lengths)


def _oversample(path: Path, offsets: array, augmenter: Augmenter) -> None:
    """Append oversampled copies (``_augmented: "oversample"``) of minority-class lines of ``path``."""
    positions: dict[str, array] = {}
    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            positions.setdefault(json.loads(line)["label"], array("q")).append(i)
        picks = oversample_picks(positions, augmenter.rng)
        augmenter.counts["oversample"] += len(picks)
        copies = []
        for pick in picks:
            fh.seek(offsets[pick])
            copies.append(dict(json.loads(fh.readline()), _augmented="oversample"))
    with open(path, "a", encoding="utf-8") as out:
        for record in copies:
            write_jsonl(out, record)


def _outputs(run: _Run, train: Iterator[dict], held: Held, paraphrase: Paraphrase | None) -> tuple[dict[str, int], array, dict[str, int]]:
    """All passes after cleaning; writes the three split files into the work folder."""
    leaks = clean.LeakIndex(run.data_format, run.cfg.dedup, run.seed, run.log, str(run.work))
    counts = {name: 0 for name in SPLITS}
    with open(run.path("validation.jsonl"), "w", encoding="utf-8") as val, open(run.path("test.jsonl"), "w", encoding="utf-8") as test:
        out = {"validation": val, "test": test, "counts": counts}
        kept, plan, keeper = _dedup_and_split(run, train, held, out, leaks)
        for i, record in enumerate(read_jsonl(kept)):
            side = plan.side(i)
            if side != TRAIN:
                name = "validation" if side == VALIDATION else "test"
                write_jsonl(out[name], record)
                counts[name] += 1
                leaks.add(record)
    lengths, balance, counts["train"] = _write_train(run, kept, plan, leaks, keeper, paraphrase)
    return counts, lengths, balance


def _manifest(run: _Run, out_dir: Path, inputs: list[Path], counts: dict[str, int]) -> dict:
    return {
        "format": run.data_format,
        "seed": run.seed,
        "inputs": [{"path": str(p), "bytes": Path(p).stat().st_size, "sha256": sha256_file(Path(p))} for p in inputs],
        "outputs": [
            {"split": name, "file": f"{name}.jsonl", "examples": counts[name], "sha256": sha256_file(run.path(f"{name}.jsonl"))}
            for name in SPLITS
        ],
        "rules": dict(sorted(run.log.rules.items())),
        "length_unit": "tokens" if run.tokenizer is not None else "words",
        "tokenizer": getattr(run.tokenizer, "name_or_path", None) if run.tokenizer is not None else None,
        "config": _config_without_terms(run.cfg),
        "pii_terms": {kind: ({"file": value, "sha256": sha256_file(Path(value).expanduser())} if isinstance(value, str)
                             else {"listed": len(value)}) for kind, value in run.cfg.pii.terms.items()},
        "versions": library_versions(),
    }


def _config_without_terms(cfg: PrepareConfig) -> dict:
    """The prepare config for the manifest, with inline ``pii.terms`` lists replaced by their size: the terms are
    the personal data the run removed, and the audit trail never holds it (files are named, with their hash)."""
    from lmforge.config.prepare import hidden_terms

    dumped = cfg.model_dump(mode="json")
    dumped["pii"]["terms"] = hidden_terms(cfg.pii.terms)
    return dumped


def _stage(run: _Run, manifest: dict, lengths: array, paraphrase: Paraphrase | None) -> Path:
    """The finished output folder, assembled in the work folder: the three splits, manifest.json,
    report.md / report.html and the lmforge marker (published by one rename, see :func:`run_prepare`)."""
    stage = run.path("out")
    stage.mkdir()
    for name in SPLITS:
        path = run.path(f"{name}.jsonl")
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(path, stage / f"{name}.jsonl")
    if paraphrase is not None and getattr(paraphrase, "counts", None):
        for op, n in sorted(paraphrase.counts.items()):
            manifest["rules"][f"augment_{op}"] = {"changed": 0, "removed": n, "found": 0, "examples": []}
        manifest["rules"] = dict(sorted(manifest["rules"].items()))
    balance = manifest["label_balance"]
    write_manifest(stage, manifest)
    write_report(stage, manifest, lengths, balance)
    write_html(stage, manifest, lengths, balance)
    write_marker(stage, "data")
    return stage


def remove_leftovers(out_dir: Path) -> list[Path]:
    """Delete what a killed prepare left beside ``out_dir``: its work folders (``.<name>.*.prepare``,
    recognised by their marker) and a folder replaced mid-swap (``.<name>.old``, lmforge data output)."""
    removed = []
    parent = out_dir.parent
    if not parent.is_dir():
        return removed
    for entry in sorted(parent.glob(f".{out_dir.name}.*.prepare")) + [parent / f".{out_dir.name}.old"]:
        if entry.is_dir() and ((entry / WORK_MARKER).is_file() or read_marker(entry) == "data"):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


WORK_MARKER = ".lmforge-work"


def run_prepare(
    records: Iterable[dict],
    data_format: str,
    prepare_cfg: PrepareConfig,
    out_dir: Path,
    *,
    inputs: list[Path],
    seed: int,
    tokenizer: Any = None,
    split: SplitConfig | None = None,
    validation_records: Iterable[dict] | None = None,
    test_records: Iterable[dict] | None = None,
    paraphrase: Paraphrase | None = None,
    check_out: Callable[[list[Path]], None] | None = None,
) -> PrepareResult:
    """Prepare canonical ``records`` (each with ``_where``) and write splits + audit into ``out_dir``.

    ``records`` / ``validation_records`` / ``test_records`` may be lists or one-shot iterators (e.g. a
    generator reading a file); each is read once. ``split`` (``data.split``; default shares 0.1 / 0.1)
    carves validation and test out of ``records`` with the one split engine (:mod:`lmforge.data.split`),
    except a part given as its own records: those become that split after the same cleaning. The train copy of any example also found (exactly or nearly) in
    validation/test is dropped and logged. ``tokenizer`` (optional) makes length filters count
    tokens. ``paraphrase`` (texts -> paraphrases per text) is required when
    ``augment.paraphrase`` is set (see :class:`~lmforge.data.prepare.paraphrase.ModelParaphraser`).
    ``check_out(inputs)`` (optional) runs once every input was read, before anything is published:
    it raises UserError when ``out_dir`` may not receive the outputs (``lmforge.outputs``).
    Raises UserError (naming the record's ``_where``) on malformed records or, with label policy
    ``fail``, on label problems; ``out_dir`` is then left untouched. The outputs (splits, manifest,
    reports, marker) are assembled in a work folder beside ``out_dir`` and published in one rename
    (:func:`lmforge.atomic.publish_dir`): a kill at any point leaves the previous folder or the
    new one, whole; the next run removes the leftovers (:func:`remove_leftovers`). A full disk is
    a :class:`~lmforge.errors.StorageError`.
    """
    cfg, out_dir = prepare_cfg, Path(out_dir)
    if cfg.augment.paraphrase is not None and paraphrase is None:
        raise UserError(
            "augment.paraphrase is set but no paraphrase model was loaded",
            where="data.prepare.augment.paraphrase",
            hint="run through `lmforge data prepare` / `lmforge train`, or pass paraphrase= to run_prepare",
        )
    terms = load_terms(cfg.pii.terms, cfg.pii.terms_match_case)  # a bad list fails before anything is written
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".prepare", dir=out_dir.parent))
    try:
        (work / WORK_MARKER).write_text("a work folder of lmforge data prepare; safe to delete\n")
        run = _Run(data_format, cfg, split or SplitConfig(), seed, tokenizer, RuleLog(cfg.examples_per_rule), work, terms)
        train, held = _checked(run, records, {"validation": validation_records, "test": test_records})
        counts, lengths, balance = _outputs(run, train, held, paraphrase)
        manifest = _manifest(run, out_dir, inputs, counts)
        manifest["label_balance"] = balance if get_format(data_format).label else None
        if check_out is not None:
            check_out(inputs)  # every input file is known now that the inputs were read
        publish_dir(_stage(run, manifest, lengths, paraphrase), out_dir)
    except BaseException as exc:
        full = storage_error(exc, str(out_dir))
        if full is not None:
            raise full from full.__cause__
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest_path, report_path = out_dir / "manifest.json", out_dir / "report.md"
    return PrepareResult(out_dir, counts, manifest_path, report_path, manifest["rules"])
