"""Page-load time of the `lmforge ui` runs list over many run folders.

    .venv/bin/python benchmarks/ui_runs_page.py [--runs 200] [--requests 30]

Writes RUNS synthetic run folders into a temp dir (the files `lmforge train` leaves: resolved
config.yaml, results.json with per-example losses and stored paired tests, metrics.jsonl,
status.json, checkpoints/last, export/; 5 of them "running" with a fresh heartbeat and a live
curve), serves them with the dashboard (uvicorn, loopback) and times GET / (the whole runs page,
status derivation included) from a client in the same process:

- cold: the first request of a fresh app (every file parsed);
- warm: median of REQUESTS requests (files re-read only when their mtime / size changed);
- uncached: the same requests with the parse cache emptied before each one (what the page would
  cost without it), interleaved with the warm ones.

Prints one JSON line with the medians, the CPU model and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_runs(root: Path, n: int) -> None:
    from tests.fixtures.runs import write_run

    folders = [write_run(root, f"run-{i:03d}", seed=i, html=False, lr=0.001 * (1 + i % 7)) for i in range(n)]
    now = time.time()
    for folder in folders[:5]:  # running: this process's pid and a fresh heartbeat
        (folder / "status.json").write_text(json.dumps(
            {"phase": "train", "step": 7, "total_steps": 20, "eta_s": 30.0, "pid": os.getpid(),
             "host": socket.gethostname(), "started": now - 60, "updated": now, "error": None, "finished": None}))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/html"}), timeout=60) as resp:
        body = resp.read()
    seconds = time.perf_counter() - start
    assert resp.status == 200 and body.count(b'data-run="') >= 200, "the page does not list every run"
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    from lmforge.ui.app import UISettings, create_app
    from tests.unit.serve.conftest import LiveServer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        make_runs(root, args.runs)
        print(f"wrote {args.runs} run folders in {time.perf_counter() - start:.1f}s", file=sys.stderr)
        server = LiveServer(create_app(UISettings(runs_dir=root)))
        try:
            cold = get(server.url + "/")
            ctx = server.app.state.ui
            warm, uncached = [], []
            for _ in range(args.requests):
                warm.append(get(server.url + "/"))
                ctx.index.cache.entries.clear()
                ctx.tail.files.clear()
                uncached.append(get(server.url + "/"))
        finally:
            server.stop()
    load = os.getloadavg()
    result = {"runs": args.runs, "requests": args.requests, "cold_ms": round(cold * 1000, 1),
              "warm_median_ms": round(statistics.median(warm) * 1000, 1),
              "warm_p90_ms": round(sorted(warm)[int(0.9 * len(warm)) - 1] * 1000, 1),
              "uncached_median_ms": round(statistics.median(uncached) * 1000, 1),
              "cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in load]}
    print(f"{'':10} {'median ms':>10}\ncold       {result['cold_ms']:>10}\nwarm       {result['warm_median_ms']:>10}\n"
          f"uncached   {result['uncached_median_ms']:>10}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
