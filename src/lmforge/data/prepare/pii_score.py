"""Precision and recall of the personal-data detector on a labelled JSONL set.

Each line: ``{"text": str, "pii": [{"type": TYPE, "value": exact substring}, ...]}`` (an empty
list marks a negative). A detection counts as a true positive when its (type, value) pair is
labelled on that line (each label matches at most once). Run as
``python -m lmforge.data.prepare.pii_score FILE`` to print a markdown table.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from lmforge.config.prepare import PII_TYPES
from lmforge.data.prepare.pii import detect


def score_pii(lines: list[dict]) -> dict[str, dict[str, float]]:
    """Per type (and ``"ALL"``): tp, fp, fn, precision, recall (1.0 when undefined)."""
    counts = {t: Counter() for t in (*PII_TYPES, "ALL")}
    for line in lines:
        expected = Counter((p["type"], p["value"]) for p in line["pii"])
        found = Counter((s.type, s.value) for s in detect(line["text"], PII_TYPES))
        for key in set(expected) | set(found):
            tp = min(expected[key], found[key])
            for bucket in (key[0], "ALL"):
                counts[bucket]["tp"] += tp
                counts[bucket]["fp"] += found[key] - tp
                counts[bucket]["fn"] += expected[key] - tp
    result = {}
    for kind, c in counts.items():
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        result[kind] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
        }
    return result


def read_labelled(path: Path) -> list[dict]:
    """The labelled lines of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def format_table(scores: dict[str, dict[str, float]]) -> str:
    """A markdown table of :func:`score_pii` output."""
    rows = ["| type | labelled | found | precision | recall |", "| --- | ---: | ---: | ---: | ---: |"]
    for kind, s in scores.items():
        rows.append(
            f"| {kind} | {s['tp'] + s['fn']} | {s['tp'] + s['fp']} | {s['precision']:.3f} | {s['recall']:.3f} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    scores = score_pii(read_labelled(Path(argv[0])))
    print(format_table(scores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
