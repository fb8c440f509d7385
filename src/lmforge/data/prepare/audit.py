"""Audit trail of a prepare run: per-rule counts and examples, manifest.json and report.md.

Nothing time- or machine-dependent goes in (no timestamps, no absolute output paths), so the
same inputs and config give byte-identical files. Examples of the ``pii`` rules show only the
redacted text and the types found, never the personal data itself.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

from lmforge.atomic import atomic_write_text

_VERSIONED = ("lmforge", "ftfy", "numpy", "pydantic", "transformers", "tokenizers")


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RuleLog:
    """Counts of changed / removed examples per rule, with the first ``keep`` examples of each."""

    def __init__(self, keep: int = 3):
        self.keep = keep
        self.rules: dict[str, dict[str, Any]] = {}

    def _entry(self, rule: str) -> dict[str, Any]:
        return self.rules.setdefault(rule, {"changed": 0, "removed": 0, "examples": []})

    def wants(self, rule: str) -> bool:
        """True while ``rule`` still keeps examples: lets callers skip building (and scrubbing) them."""
        return len(self.rules.get(rule, {}).get("examples", ())) < self.keep

    def changed(self, rule: str, where: str, before: str | None = None, after: str | None = None) -> None:
        """Record that ``rule`` rewrote the example at ``where``."""
        entry = self._entry(rule)
        entry["changed"] += 1
        if len(entry["examples"]) < self.keep:
            example = {"where": where}
            if before is not None:
                example["before"] = _short(before)
            if after is not None:
                example["after"] = _short(after)
            entry["examples"].append(example)

    def removed(self, rule: str, where: str, detail: str | None = None) -> None:
        """Record that ``rule`` dropped the example at ``where``."""
        entry = self._entry(rule)
        entry["removed"] += 1
        if len(entry["examples"]) < self.keep:
            entry["examples"].append({"where": where, **({"detail": _short(detail)} if detail else {})})

    def noted(self, rule: str, where: str, detail: str) -> None:
        """Record a finding that changed nothing (e.g. PII seen with action "report")."""
        entry = self._entry(rule)
        entry["found"] = entry.get("found", 0) + 1
        if len(entry["examples"]) < self.keep:
            entry["examples"].append({"where": where, "detail": _short(detail)})


def rules_summary(rules: dict[str, dict[str, Any]]) -> str:
    """One line of a manifest's rule counts: ``removed: dedup_near 138; changed: pii_redact 160; found: pii_name 160``."""
    parts = []
    for what in ("removed", "changed", "found"):
        counts = [f"{rule} {entry[what]}" for rule, entry in sorted(rules.items()) if entry.get(what)]
        if counts:
            parts.append(f"{what}: " + ", ".join(counts))
    return "; ".join(parts) or "no rule changed anything"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 64 KiB chunks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Python and the installed versions of the libraries that shape the output."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` (sorted keys, 2-space indent) atomically; return its path."""
    return atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _histogram(lengths: list[int], bins: int = 8) -> list[str]:
    if not lengths:
        return ["(no examples)"]
    top = max(lengths)
    width = max(1, -(-top // bins))
    counts = Counter(min(n // width, bins - 1) for n in lengths)
    peak = max(counts.values())
    return [
        f"{i * width:>6}-{(i + 1) * width - 1:<6} {'#' * round(30 * counts[i] / peak):<30} {counts[i]}"
        for i in range(bins)
    ]


def write_report(out_dir: Path, manifest: dict[str, Any], lengths: list[int], balance: dict[str, int] | None) -> Path:
    """Write ``report.md``: outputs, each rule's effect, the length histogram, the label balance."""
    lines = ["# Data preparation report", "", "## Outputs", "", "| split | examples | sha256 |", "| --- | ---: | --- |"]
    for out in manifest["outputs"]:
        lines.append(f"| {out['split']} | {out['examples']} | `{out['sha256'][:16]}` |")
    lines += ["", "## Rules", "", "| rule | changed | removed | found |", "| --- | ---: | ---: | ---: |"]
    for rule, entry in manifest["rules"].items():
        lines.append(f"| {rule} | {entry['changed']} | {entry['removed']} | {entry.get('found', 0)} |")
    for rule, entry in manifest["rules"].items():
        if entry["examples"]:
            lines += ["", f"### {rule}", ""]
            lines += [f"- `{e['where']}`: " + json.dumps({k: v for k, v in e.items() if k != "where"}, ensure_ascii=False) for e in entry["examples"]]
    lines += ["", "## Length of train examples (words or tokens)", "", "```", *_histogram(lengths), "```"]
    if balance:
        total = sum(balance.values())
        lines += ["", "## Label balance (train)", "", "| label | examples | share |", "| --- | ---: | ---: |"]
        lines += [f"| {k} | {v} | {v / total:.1%} |" for k, v in balance.items()]
    return atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
