"""``run_prepare``: canonical records -> cleaned, deduplicated, redacted, split JSONL + audit trail.

Order: validate + tag source -> normalise -> personal data -> filter -> labels (classification)
-> deduplicate (exact, near) -> split -> drop train copies of held-out examples (leaks) ->
augment train -> write ``train/validation/test.jsonl``, ``manifest.json``, ``report.md`` and
``report.html`` into ``out_dir`` (each file atomically). Same records, config and seed give byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.atomic import atomic_write_text
from lmforge.config.prepare import PrepareConfig
from lmforge.data.prepare import clean
from lmforge.data.prepare.audit import RuleLog, library_versions, sha256_file, write_manifest, write_report
from lmforge.data.prepare.augment import augment_records
from lmforge.data.prepare.fields import joined_text
from lmforge.data.prepare.filters import length_of
from lmforge.data.prepare.html_report import write_html
from lmforge.data.prepare.labels import check_labels
from lmforge.data.prepare.split import split_records

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class PrepareResult:
    """The prepared splits (lists of canonical records) and where the audit files are."""

    train: list[dict]
    validation: list[dict]
    test: list[dict]
    manifest_path: Path
    report_path: Path


def _clean(records: list[dict], data_format: str, cfg: PrepareConfig, seed: int, tokenizer: Any, log: RuleLog) -> list[dict]:
    records = clean.add_source(records, data_format)
    records = clean.normalise_records(records, data_format, cfg.normalise, log)
    records = clean.redact_records(records, data_format, cfg.pii, str(seed), log)
    return clean.filter_records(records, data_format, cfg.filter, tokenizer, log)


def _labels(records: list[dict], cfg: PrepareConfig, log: RuleLog, known: list[str] | None) -> tuple[list[dict], list[str]]:
    kept, report = check_labels(records, cfg.labels, known)
    for rule, record, detail in report.events:
        if rule == "label_similar":
            log.noted(rule, str(record.get("_where", "?")), detail)
        elif cfg.labels.policy == "fix" and rule != "label_conflict" and rule != "label_unknown":
            log.changed(rule, str(record.get("_where", "?")), None, detail)
        else:
            log.removed(rule, str(record.get("_where", "?")), detail)
    return kept, report.known


def _split(train: list[dict], held: list[dict] | None, data_format: str, cfg: PrepareConfig, seed: int) -> tuple[list[dict], ...]:
    stratify = cfg.split.stratify and data_format == "classification"
    if held is None:
        return split_records(train, cfg.split, seed, stratify)
    # The user gave an eval set: it is the validation split; test still comes out of train.
    share = cfg.split.test / (1 - cfg.split.validation) if cfg.split.test else 0.0
    train, _, test = split_records(train, cfg.split.model_copy(update={"validation": 0.0, "test": share}), seed, stratify)
    return train, held, test


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return atomic_write_text(path, text)


def _manifest(parts: dict[str, list[dict]], data_format: str, cfg: PrepareConfig, out_dir: Path, inputs: list[Path], seed: int, log: RuleLog, tokenizer: Any) -> dict:
    outputs = []
    for name, records in parts.items():
        path = _write_jsonl(out_dir / f"{name}.jsonl", records)
        outputs.append({"split": name, "file": path.name, "examples": len(records), "sha256": sha256_file(path)})
    return {
        "format": data_format,
        "seed": seed,
        "inputs": [{"path": str(p), "bytes": Path(p).stat().st_size, "sha256": sha256_file(Path(p))} for p in inputs],
        "outputs": outputs,
        "rules": dict(sorted(log.rules.items())),
        "length_unit": "tokens" if tokenizer is not None else "words",
        "tokenizer": getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None,
        "config": cfg.model_dump(mode="json"),
        "versions": library_versions(),
    }


def run_prepare(
    records: list[dict],
    data_format: str,
    prepare_cfg: PrepareConfig,
    out_dir: Path,
    *,
    inputs: list[Path],
    seed: int,
    tokenizer: Any = None,
    eval_records: list[dict] | None = None,
) -> PrepareResult:
    """Prepare canonical ``records`` (each with ``_where``) and write splits + audit into ``out_dir``.

    ``eval_records`` (optional) become the validation split after the same cleaning; the train
    copy of any example also found (exactly or nearly) in validation/test is dropped and logged.
    ``tokenizer`` (optional, a transformers tokenizer) makes length filters count tokens.
    Raises UserError (naming the record's ``_where``) on malformed records or, with label policy
    ``fail``, on label problems.
    """
    cfg, out_dir, log = prepare_cfg, Path(out_dir), RuleLog(prepare_cfg.examples_per_rule)
    train = _clean(records, data_format, cfg, seed, tokenizer, log)
    held = _clean(eval_records, data_format, cfg, seed, tokenizer, log) if eval_records is not None else None
    balance = None
    if data_format == "classification":
        train, known = _labels(train, cfg, log, None)
        if held is not None:
            held, _ = _labels(held, cfg, log, known)
    train = clean.dedup_records(train, data_format, cfg.dedup, seed, log, "train")
    if held is not None:
        held = clean.dedup_records(held, data_format, cfg.dedup, seed, log, "validation")
    train, validation, test = _split(train, held, data_format, cfg, seed)
    train = clean.drop_leaks(train, validation + test, data_format, cfg.dedup, seed, log)
    train, counts = augment_records(train, data_format, cfg.augment, seed)
    for op, n in sorted(counts.items()):
        log.rules[f"augment_{op}"] = {"changed": 0, "removed": 0, "found": n, "examples": []}
    if data_format == "classification":
        balance = {k: sum(1 for r in train if r["label"] == k) for k in sorted({r["label"] for r in train})}
    parts = {"train": train, "validation": validation, "test": test}
    manifest = _manifest(parts, data_format, cfg, out_dir, inputs, seed, log, tokenizer)
    manifest["label_balance"] = balance
    manifest_path = write_manifest(out_dir, manifest)
    lengths = [length_of(joined_text(r, data_format), tokenizer) for r in train]
    report_path = write_report(out_dir, manifest, lengths, balance)
    write_html(out_dir, manifest, lengths, balance)
    return PrepareResult(train, validation, test, manifest_path, report_path)
