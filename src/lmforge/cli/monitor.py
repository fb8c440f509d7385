"""`lmforge monitor RUN`: compare served traffic with the training data's baseline (drift per signal)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("monitor", help="report drift of served traffic against the training baseline")
    p.add_argument("run", help="run folder (reads monitor/traffic.jsonl and monitor/baseline.json inside)")
    p.add_argument("--window", default=None, help="traffic window file (default <run>/monitor/traffic.jsonl)")
    p.add_argument("--baseline", default=None, help="baseline file (default <run>/monitor/baseline.json)")
    p.add_argument("--last", type=int, default=None, help="only the last N requests of the window")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import format_monitor, run_monitor

    report = run_monitor(args.run, window=args.window, baseline=args.baseline, last=args.last)
    print(json.dumps(report, indent=1) if args.json else "\n".join(format_monitor(report)))
    return 1 if report.get("status") == "drift" else 0
