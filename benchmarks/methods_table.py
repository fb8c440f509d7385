"""Every registered method on the same two tasks with the same budget -> docs/methods.md.

Tasks: sentiment (minilm-l6, Amazon fine-food reviews "great" vs "other", classification) and
FiQA (smollm2-135m-instruct, personal-finance Q&A, instruction tuning). Each (task, method) runs
in its own subprocess (so peak RSS is its own): pipeline.open_session loads data, model and
method exactly as `lmforge train` does; then a fixed number of AdamW steps (same batches, same
order for every method; lr per method below, since prompt methods need far higher rates), then
the held-out evaluation. Reported: held-out metric, trainable parameters, peak memory (RSS, or
CUDA peak on a GPU) and the median wall time per optimizer step (first step excluded).

    .venv/bin/python benchmarks/methods_table.py                      # full table (minutes per method)
    .venv/bin/python benchmarks/methods_table.py --steps 4 --layers 2 # smoke scale

Run with nothing else busy on the machine (see shared pitfalls on oversubscribed CPU threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TASKS = {
    "sentiment": {
        "model": {"name": "minilm-l6"},
        "data": {"format": "classification", "train": {"path": "asset:reviews-train", "limit": 1200},
                 "test": {"path": "asset:reviews-test", "limit": 200}, "columns": {"text": "review", "label": "score"},
                 "max_length": 128},
        "metric": "f1_macro",
    },
    "fiqa": {
        "model": {"name": "smollm2-135m-instruct"},
        "data": {"format": "instruction", "train": "asset:fiqa", "columns": {"instruction": "question", "output": "answer"},
                 "max_length": 256},
        "metric": "eval_loss",
    },
}

# Per-method parameters and peak learning rate (the only thing that differs between methods).
METHOD_SETUP = {
    "full": ({}, 5e-5),
    "freeze": ({"last_layers": 2}, 1e-3),
    "lora": ({"r": 16, "alpha": 32}, 3e-4),
    "qlora": ({"r": 16, "alpha": 32}, 3e-4),
    "adapter": ({"reduction_factor": 16}, 1e-3),
    "prompt_tuning": ({"num_virtual_tokens": 20}, 3e-2),
    "prefix_tuning": ({"num_virtual_tokens": 20}, 1e-2),
    "p_tuning": ({"num_virtual_tokens": 20}, 1e-2),
    "ia3": ({}, 3e-3),
}


def budget(task: str, args) -> tuple[int, int]:
    """(optimizer steps, batch size) of ``task``: its --budget, else --steps x --batch."""
    return getattr(args, "budgets", {}).get(task, (args.steps, args.batch))


def run_config(task: str, method: str, args, run_dir: str):
    """The RunConfig of one (task, method) cell."""
    from lmforge.config.schema import RunConfig

    spec = TASKS[task]
    params, lr = METHOD_SETUP.get(method, ({}, 3e-4))
    model = dict(spec["model"])
    if args.layers:
        model["overrides"] = {"num_hidden_layers": args.layers}
    return RunConfig.model_validate({
        "run": {"name": f"{task}-{method}", "output_dir": run_dir, "seed": 0},
        "model": model, "data": spec["data"], "method": {"name": method, **params},
        "train": {"batch_size": budget(task, args)[1], "lr": lr, "max_steps": budget(task, args)[0],
                  "threads": args.threads},
        "eval": {"max_examples": args.eval_examples, "generations": 0, "before": False, "metric": spec["metric"]},
    })


def measure(task: str, method: str, args) -> dict:
    """Train the task's budget of AdamW steps and evaluate; runs inside the child process."""
    import torch

    from lmforge.methods.base import count_parameters
    from lmforge.pipeline import open_session

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = run_config(task, method, args, run_dir)
        torch.manual_seed(0)
        torch.set_num_threads(args.threads)
        s = open_session(cfg, say=lambda *_: None)
        trainable, total = count_parameters(s.model)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = s.model.to(device)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
        features = s.train_features
        steps, size = budget(task, args)
        times = []
        model.train()
        for step in range(steps):
            start = (step * size) % max(len(features) - size, 1)
            batch = {k: v.to(device) if torch.is_tensor(v) else v
                     for k, v in s.collate(features[start:start + size]).items()}
            began = time.perf_counter()
            out = s.objective.loss(model, batch)
            (out.total / max(out.count, 1)).backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - began)
        metrics = s.evaluate(model)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"metric": TASKS[task]["metric"], "value": metrics.get(TASKS[task]["metric"]),
            "trainable": trainable, "total": total, "peak_mib": peak / 2**20, "peak_kind": device.type,
            "s_per_step": statistics.median(times[1:] or times), "lr": cfg.train.lr}


def run_cell(task: str, method: str, args) -> dict:
    """Run one cell in a fresh subprocess; returns its JSON result or {"error": ...}."""
    cmd = [sys.executable, __file__, "--child", task, method, "--steps", str(args.steps), "--batch", str(args.batch),
           "--threads", str(args.threads), "--eval-examples", str(args.eval_examples), "--layers", str(args.layers or 0)]
    cmd += [f"--budget={t}={n}x{b}" for t, (n, b) in getattr(args, "budgets", {}).items()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": tail[:160]}


def capabilities() -> list[str]:
    """The registry as a markdown table: what each method trains and what it can do."""
    from lmforge.methods import METHODS

    lines = ["| method | trains | merge for export | quantized base | packing | objectives |",
             "|---|---|---|---|---|---|"]
    for name, spec in sorted(METHODS.items()):
        objectives = ", ".join(spec.objectives) if spec.objectives else "all"
        lines.append(f"| `{name}` | {spec.trains} | {'yes' if spec.mergeable else 'no (exported on its own)'} | "
                     f"{'yes' if spec.quantized_base else 'no'} | {'yes' if spec.can_pack else 'no'} | {objectives} |")
    lines += ["", "Guidance (one line each, also printed by `lmforge methods`):", ""]
    lines += [f"- `{name}`: {spec.guidance}" for name, spec in sorted(METHODS.items()) if spec.guidance]
    return lines + [""]


def parameters() -> list[str]:
    """Each method's parameters (from its pydantic params class): name, default, description."""
    from lmforge.methods import METHODS

    lines = ["## Parameters", "", "Set them beside the name: `method: {name: qlora, r: 8, bits: 4}`.", ""]
    for name, spec in sorted(METHODS.items()):
        fields = spec.params.model_fields
        lines += [f"### `{name}`", ""]
        if not fields:
            lines += ["No parameters.", ""]
            continue
        lines += ["| parameter | default | meaning |", "|---|---|---|"]
        for field, info in fields.items():
            default = "(required)" if info.is_required() else json.dumps(info.get_default(call_default_factory=True))
            lines.append(f"| `{field}` | `{default}` | {info.description or ''} |")
        lines.append("")
    return lines


def measured(results: dict, args, seconds: float) -> list[str]:
    """One table per task plus how it was produced."""
    from lmforge.methods import METHODS

    command = " ".join(["benchmarks/methods_table.py", *sys.argv[1:]])
    sizes = "; ".join(f"{t}: {budget(t, args)[0]} AdamW steps of batch {budget(t, args)[1]}" for t in results)
    lines = ["Every registered method trained on the same two tasks with the same budget per task ("
             f"{sizes}), the same batches in the same order, fp32, "
             f"{args.threads} CPU thread(s); held-out metric on the first {args.eval_examples} held-out examples. "
             "Only the learning rate differs per method (column lr).", "",
             f"Produced by `.venv/bin/python {command}` on {platform.machine()} with {os.cpu_count()} CPU cores, "
             f"{time.strftime('%Y-%m-%d', time.gmtime())}, in {seconds / 60:.1f} min.", ""]
    if args.layers:
        lines += [f"**Smoke scale**: models cut to their first {args.layers} transformer layers "
                  "(`model.overrides.num_hidden_layers`); numbers show the pipeline works, not method quality.", ""]
    for task, rows in results.items():
        spec = TASKS[task]
        lines += [f"### {task} ({spec['model']['name']}, {spec['data']['format']}; {spec['metric']})", "",
                  f"| method | {spec['metric']} | trainable params | % of model | peak memory (MiB) | s / step | lr | mergeable |",
                  "|---|---|---|---|---|---|---|---|"]
        for method, r in rows.items():
            merge = "yes" if METHODS[method].mergeable else "no"
            if "error" in r:
                lines.append(f"| {method} | failed: {r['error']} | | | | | | {merge} |")
                continue
            value = "-" if r["value"] is None else f"{r['value']:.4f}"
            lines.append(f"| {method} | {value} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.3f} | "
                         f"{r['peak_mib']:.0f} ({r['peak_kind']}) | {r['s_per_step']:.3f} | {r['lr']:g} | {merge} |")
        lines.append("")
    return lines + ["Peak memory is the whole process's peak RSS on CPU (Python, libraries, data, model, optimizer), "
                    "or the CUDA allocator peak on a GPU.", ""]


FREEZE_POOLED = """
## Freeze with a pooled head: solved, not trained

`method: {name: freeze, head: pooled}` puts mean pooling (or `cls` / `last`) and one linear layer on
the frozen encoder. With a linear head and a frozen encoder (`head_hidden: 0`, `last_layers: 0`, the
defaults), the head is solved instead of trained (`fit: auto`): every training example runs through
the encoder once, then full-batch L-BFGS minimises scikit-learn's logistic-regression objective
(`0.5 ||W||^2 + C sum CE`, binary for 2 classes, multinomial for more) on those features, to
convergence, in seconds. `c: 1.0` is scikit-learn's default; `c: null` chooses C from 0.1 ... 1e4 by
`cv_folds`-fold stratified cross-validation on the training set (out-of-fold macro-F1); held-out data
choose nothing. The training loop does not run (`train.epochs` / `lr` do not apply); the run folder
is written as a one-step run, so `lmforge eval RUN`, export, serve and `--resume` work as for any run.
Same seed, same weights and same before / after metrics: the head initialises from `run.seed`.

Measured (benchmarks/RESULTS.md): on 1,200 / 300 Amazon reviews with MiniLM, macro-F1 0.679, equal to
scikit-learn's LogisticRegression on the same cached features (0.679); the previous default (2 epochs
of AdamW on the head) reached 0.429. tests/unit/methods/test_freeze_fit.py holds lmforge within 0.01
of scikit-learn on 300 / 300 reviews. `fit: loop` trains the head with the optimizer instead (the
only choice for an MLP head or unfrozen top layers).
"""


def render(results: dict | None, args, seconds: float) -> str:
    """docs/methods.md: the capability table, then the measurements (or how to produce them)."""
    lines = ["# Fine-tuning methods", "",
             "Pick one with `method: {name: ...}` in the run YAML; `lmforge methods` prints the same registry "
             "(add `--model` for trainable-parameter counts on your model). Generated by "
             "`benchmarks/methods_table.py`; do not edit by hand.", "", "## What each method trains", ""]
    lines += capabilities()
    lines += ["## Measured: sentiment (minilm-l6) and FiQA (smollm2-135m-instruct)", ""]
    if results:
        lines += measured(results, args, seconds)
    else:
        lines += ["Not measured yet: the table needs an otherwise idle machine (roughly an hour on 2 CPU cores "
                  "with the defaults). Produce it with", "", "```", ".venv/bin/python benchmarks/methods_table.py",
                  "```", "", "which rewrites this file with one table per task: held-out metric, trainable "
                  "parameters, peak memory and time per step, every method on the same batches and step budget.", ""]
    return "\n".join(lines + parameters()) + FREEZE_POOLED


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("TASK", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-examples", type=int, default=64)
    parser.add_argument("--layers", type=int, default=0, help="cut models to N layers (smoke scale); 0 = all")
    parser.add_argument("--budget", action="append", default=[], metavar="TASK=STEPSxBATCH",
                        help="per-task budget, e.g. sentiment=100x8 (default: --steps x --batch for every task)")
    parser.add_argument("--write", default=str(ROOT / "docs" / "methods.md"))
    parser.add_argument("--no-run", action="store_true", help="write the capability table only (no measurements)")
    args = parser.parse_args(argv)
    args.budgets = {}
    for item in args.budget:
        task, _, size = item.partition("=")
        steps, _, batch = size.partition("x")
        if task not in TASKS or not steps.isdigit() or not batch.isdigit():
            parser.error(f"--budget {item!r}: use TASK=STEPSxBATCH with TASK in {', '.join(TASKS)}")
        args.budgets[task] = (int(steps), int(batch))
    if args.child:
        print("RESULT " + json.dumps(measure(*args.child, args)), flush=True)
        return 0
    from lmforge.atomic import atomic_write_text
    from lmforge.methods import METHODS

    began = time.perf_counter()
    results: dict = {}
    for task in [] if args.no_run else args.tasks:
        results[task] = {}
        for method in args.methods or sorted(METHODS):
            results[task][method] = run_cell(task, method, args)
            print(task, method, json.dumps(results[task][method]), flush=True)
    atomic_write_text(Path(args.write), render(results, args, time.perf_counter() - began))
    print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
