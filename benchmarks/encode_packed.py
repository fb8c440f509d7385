"""Encoder forward as the server runs it (weights packed for oneDNN) vs the plain transformers model.

    .venv/bin/python benchmarks/encode_packed.py [--model minilm-l6] [--batch 1 32] [--rounds 7] [--threads 2]

Loads the built-in encoder twice: once as transformers loads it, once through ``lmforge.serve.store.ModelStore``
(what ``lmforge serve`` serves for /v1/embeddings and /v1/classify: linear layers packed once,
:mod:`lmforge.serve.packed`). Times one forward of ``--batch`` FiQA questions per side, sides interleaved per round,
and prints the median ms per side, the ratio, the largest difference of the last hidden states, and the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch
    from transformers import AutoModel

    from lmforge.config.schema import ModelConfig
    from lmforge.config.serve import ServeConfig
    from lmforge.data.assets import asset_path
    from lmforge.model.source import resolve_model
    from lmforge.serve.store import ModelStore, resolve_target

    torch.set_num_threads(args.threads)
    folder = resolve_model(ModelConfig(name=args.model)).path
    plain = AutoModel.from_pretrained(folder).eval()
    store = ModelStore(resolve_target(Path(folder), ServeConfig()))
    questions = [json.loads(line)["question"] for line in asset_path("fiqa").read_text().splitlines()]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    print(f"CPU {cpu}, {args.threads} threads, {args.model}; server: {store.layout}; load {os.getloadavg()}")
    result = {}
    with torch.inference_mode():
        for batch in args.batch:
            enc = store.tokenizer(questions[:batch], return_tensors="pt", padding=True, truncation=True,
                                  max_length=128)
            diff = float((store.model(**enc).last_hidden_state - plain(**enc).last_hidden_state).abs().max())
            times: dict[str, list[float]] = {"transformers": [], "lmforge serve": []}
            for _ in range(args.rounds + 1):  # the first round warms up and is dropped
                for name, model in (("transformers", plain), ("lmforge serve", store.model)):
                    start = time.perf_counter()
                    model(**enc)
                    times[name].append((time.perf_counter() - start) * 1e3)
            med = {k: statistics.median(v[1:]) for k, v in times.items()}
            ratio = med["transformers"] / med["lmforge serve"]
            result[batch] = {"median_ms": med, "ratio": ratio, "max_abs_diff": diff}
            print(f"batch {batch:3d}: transformers {med['transformers']:.2f} ms, lmforge serve "
                  f"{med['lmforge serve']:.2f} ms, {ratio:.2f}x; max |difference| {diff:.2e}")
    print(json.dumps({"cpu": cpu, "threads": args.threads, "model": args.model, "layout": store.layout,
                      "result": result}))


if __name__ == "__main__":
    main()
