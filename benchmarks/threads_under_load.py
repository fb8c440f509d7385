"""Seconds per LoRA step with lmforge's default thread policy vs fixed threads, under a competing CPU job.

Measured before this policy: on a 2-core machine shared with another job, LoRA ran at 12 s/step with torch's
default threads (2) and 1.3 s/step with 1. lmforge's default (``runtime.threads`` unset) now picks the
thread count from the CPUs other processes leave free (``lmforge.train.threads``) and, like the
CLI, sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads when the machine is busy.

Each configuration runs in its own process (the wait policy is fixed when torch loads), interleaved,
with and without a competing job: ``--competitors`` Python busy-loop processes started before the
worker and stopped after it; the order of conditions and configurations rotates every round (use 3 rounds
so that each configuration runs once in each position). Reports the median s/step (wall clock, first step excluded) and what the
default chose.

    .venv/bin/python benchmarks/threads_under_load.py --rounds 3 --steps 8
    .venv/bin/python benchmarks/threads_under_load.py --rounds 3 --steps 8 --competitors 1 --conditions busy

Run it on an otherwise idle machine: the "idle" condition must really be idle.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {"default": None, "threads=2": 2, "threads=1": 1}
BUSY_LOOP = "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\nwhile True: pass"


def run_worker(args) -> dict:
    """One training run in this process; prints RESULT json (median s/step, threads used, policy line)."""
    if args.worker == "default":
        from lmforge.train.threads import choose_wait_policy

        choose_wait_policy()  # what `lmforge train` does before torch is imported
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmforge.config.schema import RuntimeConfig, TrainConfig
    from lmforge.methods import METHODS, build_method
    from lmforge.model.task import TaskInfo
    from lmforge.objectives import build_objective, get_objective_spec
    from lmforge.train import train
    from lmforge.train.callbacks import Callback

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=8000, hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=512)
    model = LlamaForCausalLM(cfg)
    model.config.use_cache = False
    lora = build_method("lora", METHODS["lora"].params.model_validate({"r": 16, "dropout": 0.0}))
    model = lora.apply(model, TaskInfo("causal_lm"))
    g = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(args.steps * args.batch):
        n = int(torch.randint(64, 257, (1,), generator=g))
        ids = torch.randint(10, 8000, (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [-100] + ids[1:], "lengths": [n]})
    objective = build_objective("causal_lm", get_objective_spec("causal_lm").params())
    times: list[float] = []

    class Timer(Callback):
        def on_step(self, state, logs):
            times.append(logs["seconds"])

    train_cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch, lr=1e-4, warmup_ratio=0.0, log_every=1000,
                            tensorboard=False, eval_every=10_000, save_every=10_000)
    runtime_cfg = RuntimeConfig(device="cpu", precision="fp32", threads=CONFIGS[args.worker])
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # keeps the runtime's "threads: ..." line
        train(model, objective, rows, train_cfg=train_cfg, runtime_cfg=runtime_cfg, run_dir=Path(tempfile.mkdtemp()),
              collate=lambda feats: objective.collate(feats, None), evaluate_fn=None, seed=0, best_metric="loss",
              metric_mode="min", callbacks=[Timer()])
    lines = log.getvalue().splitlines()
    return {"step_s": statistics.median(times[1:]), "threads": torch.get_num_threads(),
            "policy": next((x for x in lines if x.startswith("threads:")), ""),
            "wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def run_config(name: str, args, competitors: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(competitors)]
    try:
        time.sleep(1.0 if busy else 0.0)  # let the competitors show up in /proc/stat
        cmd = [sys.executable, __file__, "--worker", name, f"--steps={args.steps}", f"--batch={args.batch}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    finally:
        for p in busy:
            p.terminate()
        for p in busy:
            p.wait()
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{name} failed")
    return json.loads(line[7:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--competitors", type=int, default=1, help="busy-loop processes in the 'busy' condition")
    p.add_argument("--conditions", default="busy,idle")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(run_worker(args)))
        return 0
    conditions = args.conditions.split(",")
    print(f"CPUs: {len(os.sched_getaffinity(0))}; load before {os.getloadavg()}")
    results: dict = {}
    for r in range(args.rounds):
        # rotate the order every round (conditions and configurations), so that no configuration always runs
        # first or right after the busy loops: one that did ran 13% slower on the Zen 1 guest (RESULTS.md)
        for cond in conditions[r % len(conditions):] + conditions[:r % len(conditions)]:
            names = list(CONFIGS)
            for name in names[r % len(names):] + names[:r % len(names)]:
                out = run_config(name, args, args.competitors if cond == "busy" else 0)
                results.setdefault((cond, name), []).append(out)  # (keys in first-run order: the table's rows)
                print(f"round {r + 1} {cond:<4} {name:<10} {out['step_s']:.3f} s/step  threads {out['threads']}  "
                      f"wait policy {out['wait_policy'] or 'default'}", flush=True)
    print(f"\nload after {os.getloadavg()}\n")
    print("| condition | configuration | s/step (median) | threads used | default's choice |")
    print("| --- | --- | --- | --- | --- |")
    for (cond, name), outs in results.items():
        med = statistics.median(o["step_s"] for o in outs)
        chosen = "; ".join(sorted({o["policy"] for o in outs})) if name == "default" else ""
        used = "/".join(str(t) for t in sorted({o["threads"] for o in outs}))
        print(f"| {cond} ({args.competitors if cond == 'busy' else 0} busy loops) | {name} | {med:.3f} | {used} | {chosen} |")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{c}/{n}": v for (c, n), v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
