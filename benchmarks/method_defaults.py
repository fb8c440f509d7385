"""Choose each method's default hyperparameters on validation splits carved from the training data.

For every method, each candidate (a learning rate, optionally with method parameters) runs the
methods table's cell (benchmarks/methods_table.py: open_session, score before, the task's budget of
lmforge's training loop, score after) with ``--split validation``: trained on the table's training
examples minus a validation share, scored on that share. The held-out sets the table reports are
never read. Every cell is appended to ``--log`` (JSON lines; cells already there are not rerun), and
``--summary`` prints the markdown table of benchmarks/RESULTS.md "Per-method defaults".

    .venv/bin/python benchmarks/method_defaults.py --log benchmarks/method_defaults.jsonl
    .venv/bin/python benchmarks/method_defaults.py --log benchmarks/method_defaults.jsonl --summary
    (several logs: --log a.jsonl b.jsonl; new cells are appended to the first)

The rule (:func:`choose`): among a method's candidates that beat their before score beyond noise on
every task's validation split (each judged at the largest budget it ran), the one with the best mean rank
over the tasks, ranked among the candidates run on every task (ties: beyond noise at more of the budgets
tried, then the smaller lr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import methods_table  # noqa: E402  (the cell runner shared with the table)

# Learning rates tried per method and task (2-3 a method: the machine had 2 shared cores). The methods
# the old table left at their before score come first (ia3, adapter, prompt / prefix / p-tuning); on
# sentiment those three needed rates above what FiQA needed, so their sentiment grids reach higher.
CANDIDATES = {
    "ia3": {"sentiment": [1e-2], "fiqa": [1e-2, 3e-2]},
    "adapter": {"sentiment": [3e-3], "fiqa": [1e-3, 3e-3]},
    "prompt_tuning": {"sentiment": [3e-1, 1.0], "fiqa": [3e-2, 3e-1]},
    "prefix_tuning": {"sentiment": [1e-2, 3e-2], "fiqa": [3e-3, 1e-2]},
    "p_tuning": {"sentiment": [3e-2, 1e-1], "fiqa": [3e-3, 3e-2]},
    "lora": {"sentiment": [5e-4, 2e-4, 1e-3], "fiqa": [5e-4, 1e-3]},
    "qlora": {"sentiment": [1e-3], "fiqa": [1e-3]},  # LoRA over a quantized base: LoRA's choice, checked
    "full": {"sentiment": [5e-5], "fiqa": [5e-5, 1e-4]},
    "freeze": {"sentiment": [1e-3, 3e-3], "fiqa": [1e-3, 3e-3]},
}


def cells(tasks: list[str], methods: list[str]) -> list[tuple[str, str, float, str | None]]:
    return [(task, method, lr, None) for method in methods for task in tasks for lr in CANDIDATES[method][task]]


def done(log: Path) -> set[tuple]:
    if not log.exists():
        return set()
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {(r["task"], r["method"], r["lr_given"], r["params_given"]) for r in rows}


def run(args) -> None:
    log = Path(args.log[0])
    finished = done(log)
    for task, method, lr, params in cells(args.tasks, args.methods):
        if (task, method, lr, params) in finished:
            continue
        cell = methods_table.parse(["--split", "validation", "--threads", str(args.threads),
                                    "--eval-examples", str(args.eval_examples.get(task, 0)), "--lr", repr(lr),
                                    *(["--params", params] if params else [])])
        row = methods_table.run_cell(task, method, cell)
        row = {**row, "lr_given": lr, "params_given": params}
        print(json.dumps(row), flush=True)
        with log.open("a") as out:
            out.write(json.dumps(row) + "\n")


def _largest_budget(rows: list[dict]) -> dict[tuple, dict]:
    """{(task, lr, params): row} keeping, per cell, the row with the most optimizer updates (then examples)."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (r["task"], r["lr_given"], r["params_given"] or "")
        size = (r["budget"][0], r["budget"][0] * r["budget"][1])
        if key not in out or size >= (out[key]["budget"][0], out[key]["budget"][0] * out[key]["budget"][1]):
            out[key] = r
    return out


def choose(rows: list[dict], tasks: list[str]) -> dict[str, dict]:
    """{method: {"lr", "params", "why"}} by the rule in the module doc, from ``rows`` of the logs.

    Each candidate is judged on each task by its row at the largest budget run (several budgets were
    tried); ties in mean rank go to the candidate that beat its before score at more of the budgets
    run, then to the smaller lr."""
    chosen = {}
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method and "error" not in r]
        cells = _largest_budget(mine)
        keys = sorted({(k[1], k[2]) for k in cells})
        ranks: dict[tuple, list[int]] = {k: [] for k in keys}
        ok = {k: True for k in keys}
        wins = {k: sum(r["beyond_noise"] for r in mine if (r["lr_given"], r["params_given"] or "") == k) for k in keys}
        complete = [k for k in keys if all((t, *k) in cells for t in tasks)]
        for task in tasks:
            by_key = {(k[1], k[2]): r for k, r in cells.items() if k[0] == task}
            sign = 1 if methods_table.TASKS[task]["metric"].endswith("loss") else -1
            rivals = [by_key[k]["value"] * sign for k in (complete or keys) if k in by_key]
            for k in keys:
                if k not in by_key:
                    ok[k] = False
                    continue
                ranks[k].append(sum(v < by_key[k]["value"] * sign for v in rivals))  # ties share a rank
                ok[k] &= by_key[k]["beyond_noise"]
        eligible = [k for k in keys if ok[k]] or complete or keys
        best = min(eligible, key=lambda k: (sum(ranks[k]) / max(len(ranks[k]), 1), -wins[k], k[0]))
        missing = [t for t in tasks if not any(k[0] == t for k in cells)]
        why = ("beyond noise on every task" if ok[best] else f"not run on: {', '.join(missing)}" if missing
               else "NONE beyond noise on every task")
        chosen[method] = {"lr": best[0], "params": best[1] or None, "why": why}
    return chosen


def summary(args) -> str:
    rows = [json.loads(line) for log in args.log for line in Path(log).read_text().splitlines() if line.strip()]
    tasks = [t for t in args.tasks if any(r["task"] == t for r in rows)]
    chosen = choose(rows, tasks)
    head = "| method | lr | params | " + " | ".join(f"{t}: {methods_table.TASKS[t]['metric']} before -> after "
                                                  "(change, beyond noise; steps x batch)" for t in tasks) + " | chosen |"
    lines = [head, "|" + "---|" * (4 + len(tasks))]
    for method in sorted(chosen):
        for lr, params in sorted({(r["lr_given"], r["params_given"] or "") for r in rows if r["method"] == method}):
            cols = []
            for task in tasks:
                found = [x for x in rows if (x["task"], x["method"], x["lr_given"], x["params_given"] or "")
                         == (task, method, lr, params)]
                found.sort(key=lambda x: (-x["budget"][0], -x["budget"][0] * x["budget"][1]) if "budget" in x else (0, 0))
                cols.append("<br>".join(
                    f"failed: {r['error'][:60]}" if "error" in r else
                    f"{r['before']:.4f} -> {r['value']:.4f} ({r['difference']:+.4f}, "
                    f"{'yes' if r['beyond_noise'] else 'no'}; {r['budget'][0]}x{r['budget'][1]})" for r in found) or "-")
            pick = chosen[method]
            mark = "**yes**" if (pick["lr"], pick["params"] or "") == (lr, params) else ""
            lines.append(f"| {method} | {lr:g} | {params or ''} | " + " | ".join(cols) + f" | {mark} |")
    for method, pick in sorted(chosen.items()):
        if not pick["why"].startswith("beyond"):
            lines += ["", f"{method}: {pick['why']} (chosen on the rest by the same rule)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True, nargs="+", help="JSON-lines log(s): cells run append to the first")
    parser.add_argument("--tasks", nargs="+", default=list(methods_table.TASKS), choices=list(methods_table.TASKS))
    parser.add_argument("--methods", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summary", action="store_true", help="print the markdown summary of --log and stop")
    args = parser.parse_args(argv)
    args.eval_examples = {"fiqa": 48}  # validation examples scored per FiQA cell (sentiment: all of them)
    if args.summary:
        print(summary(args))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
