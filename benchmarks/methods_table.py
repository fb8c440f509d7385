"""Every registered method, at its own defaults, on the same two tasks and budgets -> docs/methods.md.

Tasks: sentiment (minilm-l6, Amazon fine-food reviews "great" vs "other", classification) and
FiQA (smollm2-135m-instruct, personal-finance Q&A, instruction tuning). Each (task, method) runs
in its own subprocess (so peak RSS is its own): pipeline.open_session loads data, model and
method exactly as `lmforge train` does (the plan fills in the method's default lr), the held-out
set is scored before training, lmforge's training loop runs the task's budget of optimizer steps
(same batches, same order, warmup + cosine as in any run), and the held-out set is scored again.
Reported: before, after, the paired bootstrap of after - before with its 95% interval (beyond
noise when the interval excludes 0), trainable parameters, peak memory (RSS, or CUDA peak on a
GPU), the median wall time per optimizer step (first step excluded) and the lr the plan used.

    .venv/bin/python benchmarks/methods_table.py                      # the table (see TASKS for budgets)
    .venv/bin/python benchmarks/methods_table.py --steps 4 --layers 2 # smoke scale
    .venv/bin/python benchmarks/methods_table.py --split validation --method adapter --lr 3e-3 --log sweep.jsonl

``--split validation`` never touches the held-out set: it carves a validation split out of the
table's training data (benchmarks/method_defaults.py chooses each method's defaults on it) and
appends one JSON line per cell to ``--log`` instead of writing docs/methods.md.

Run with nothing else busy on the machine (see shared pitfalls on oversubscribed CPU threads).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(tempfile.gettempdir()) / "lmforge-methods-table"  # validation-split data files (derived, not committed)

# Each task: model, held-out data, metric, budget (optimizer steps, batch size) and the share of the
# training data held out as the validation split that chooses defaults (--split validation).
TASKS = {
    "sentiment": {
        "model": {"name": "minilm-l6"},
        "data": {"format": "classification", "train": {"path": "asset:reviews-train", "limit": 1200},
                 "test": {"path": "asset:reviews-test", "limit": 600}, "columns": {"text": "review", "label": "score"},
                 "max_length": 128},
        # Reviews 301-600 of reviews-test: the first 300 were the test split of an earlier table whose results
        # were seen before LoRA's classification lr and the prompt methods' classification epochs were set, so
        # they are no longer data that chose nothing (benchmarks/RESULTS.md, "Per-method defaults").
        "test_from": 300,
        "metric": "f1_macro", "budget": (300, 8), "validation_fraction": 0.2,
    },
    "fiqa": {
        "model": {"name": "smollm2-135m-instruct"},
        "data": {"format": "instruction", "train": "asset:fiqa", "columns": {"instruction": "question", "output": "answer"},
                 "max_length": 192},
        "metric": "eval_loss", "budget": (30, 4), "validation_fraction": 0.15, "test_fraction": 0.1,
    },
}

# Method parameters the table sets (everything else, lr included, is the method's default). freeze's
# default trains only the model's own head, and SmolLM2's head is tied to its input embeddings: nothing
# to train there, so the table unfreezes the top 2 layers (on both tasks, for one setting per method).
METHOD_PARAMS = {"freeze": {"last_layers": 2}}


def budget(task: str, args) -> tuple[int, int]:
    """(optimizer steps, batch size) of ``task``: --budget, else --steps x --batch when given, else TASKS."""
    given = getattr(args, "budgets", {}).get(task)
    if given:
        return given
    steps, batch = TASKS[task]["budget"]
    return (args.steps or steps, args.batch or batch)


def hold_out(records: list, fraction: float, seed: int, key=None) -> tuple[list[int], list[int]]:
    """The table's own fixed partition (independent of lmforge's split engine, so it never moves with it):
    sorted (kept, held-out) indices, ``round(n * fraction)`` held out, a seeded shuffle per ``key`` group
    with largest-remainder quotas (stratified by label for classification)."""
    n = len(records)
    n_held = min(n - 1, max(1, round(n * fraction)))
    rng = random.Random(seed)
    groups: dict = defaultdict(list)
    for i, record in enumerate(records):
        groups[key(record) if key else None].append(i)
    names = sorted(groups, key=str)
    for name in names:
        rng.shuffle(groups[name])
    quotas = {name: n_held * len(groups[name]) / n for name in names}
    take = {name: int(quotas[name]) for name in names}
    for name in sorted(names, key=lambda g: (-(quotas[g] - take[g]), str(g)))[: n_held - sum(take.values())]:
        take[name] += 1
    held = sorted(i for name in names for i in groups[name][: take[name]])
    chosen = set(held)
    return [i for i in range(n) if i not in chosen], held


def _write(path: Path, records: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, ensure_ascii=False)
                           + "\n" for r in records))
    tmp.replace(path)
    return str(path)


def task_data(task: str, split: str) -> dict:
    """The data section of ``task``'s cell. ``heldout``: trained on the table's training examples, scored
    on its test examples. ``validation``: trained on the training examples minus ``validation_fraction``
    of them, scored on that share; the test examples never enter. A task without its own test source
    holds ``test_fraction`` of its data out as test first. The parts are JSONL files of canonical
    records under the temp folder, written once (seeded, so always the same examples)."""
    from lmforge.config.schema import DataConfig
    from lmforge.data.formats import get_format
    from lmforge.data.splits import load_records

    spec = TASKS[task]
    data = spec["data"]
    label = get_format(data["format"]).label
    key = (lambda r: r[label]) if label else None
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = WORK / f"{task}-{digest}"
    names = ["train", "test", "fit", "validation"]
    if not all((folder / f"{n}.jsonl").exists() for n in names):
        train, held, _ = load_records(DataConfig.model_validate({**data, "split": {"validation": 0, "test": 0}}))
        test = held["test"]
        if test is not None:
            test = test[spec.get("test_from", 0):]
        if test is None:
            keep, out = hold_out(train, spec["test_fraction"], 0, key)
            train, test = [train[i] for i in keep], [train[i] for i in out]
        fit, validation = hold_out(train, spec["validation_fraction"], 0, key)
        parts = {"train": train, "test": test, "fit": [train[i] for i in fit],
                 "validation": [train[i] for i in validation]}
        for name in names:
            _write(folder / f"{name}.jsonl", parts[name])
    keep = {k: v for k, v in data.items() if k in ("format", "max_length", "labels")}
    files = ({"train": "fit", "validation": "validation"} if split == "validation" else
             {"train": "train", "test": "test"})
    return {**keep, **{part: str(folder / f"{name}.jsonl") for part, name in files.items()},
            "split": {"validation": 0, "test": 0}}


def run_config(task: str, method: str, args, run_dir: str):
    """The RunConfig of one (task, method) cell: the method's defaults unless --lr / --param are given."""
    from lmforge.config.schema import RunConfig

    spec = TASKS[task]
    model = dict(spec["model"])
    if args.layers:
        model["overrides"] = {"num_hidden_layers": args.layers}
    steps, batch = budget(task, args)
    params = {**METHOD_PARAMS.get(method, {}), **json.loads(args.params or "{}")}
    train = {"batch_size": batch, "max_steps": steps, "tensorboard": False, "save_every": 10**9, "log_every": 10**9}
    if args.lr:
        train["lr"] = args.lr
    data = task_data(task, args.split)
    return RunConfig.model_validate({
        "run": {"name": f"{task}-{method}", "output_dir": run_dir, "seed": 0},
        "model": model, "data": data, "method": {"name": method, **params}, "train": train,
        "runtime": {"threads": args.threads, "precision": "fp32"},
        "eval": {"max_examples": args.eval_examples, "generations": 0, "before": True, "metric": spec["metric"]},
    })


def measure(task: str, method: str, args) -> dict:
    """Score before, train the budget with lmforge's loop, score after; runs inside the child process."""
    import torch

    from lmforge.evaluate.intervals import paired_tests
    from lmforge.methods.base import count_parameters
    from lmforge.pipeline import open_session
    from lmforge.train import train
    from lmforge.train.callbacks import Callback

    metric = TASKS[task]["metric"]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = run_config(task, method, args, run_dir)
        torch.set_num_threads(args.threads)
        s = open_session(cfg, say=lambda *_: None)
        trainable, total = count_parameters(s.model)
        part = "validation" if args.split == "validation" else "test"
        before = s.evaluate(per_example=True, part=part)
        times: list[float] = []
        losses: list[float] = []

        class Timer(Callback):
            def on_step(self, state, logs):
                times.append(logs["seconds"])
                losses.append(logs["loss_sum"] / max(logs["units"], 1))

        train(s.model, s.objective, s.train_features, train_cfg=s.config.train, runtime_cfg=s.config.runtime,
              run_dir=run_dir, collate=s.collate,
              evaluate_fn=None, seed=cfg.run.seed, best_metric=s.plan.best_metric, metric_mode=s.plan.metric_mode,
              callbacks=[Timer()])
        after = s.evaluate(per_example=True, part=part)
    test = paired_tests(before["per_example"], after["per_example"], before.get("labels"), seed=0).get(metric, {})
    cuda = torch.cuda.is_available()
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    better = (test.get("high", 0) < 0) if metric.endswith("loss") else (test.get("low", 0) > 0)
    return {"task": task, "method": method, "split": args.split, "metric": metric, "before": before.get(metric),
            "value": after.get(metric), "difference": test.get("difference"), "low": test.get("low"),
            "high": test.get("high"), "p_value": test.get("p_value"), "beyond_noise": bool(better),
            "n_eval": min(len(s.held_out[part]), args.eval_examples or len(s.held_out[part])), "n_train": len(s.train_features),
            "trainable": trainable, "total": total, "peak_mib": peak / 2**20, "peak_kind": "cuda" if cuda else "cpu",
            "s_per_step": statistics.median(times[1:] or times), "wall_s": time.perf_counter() - began,
            "lr": s.config.train.lr, "params": s.plan.method_params.model_dump(mode="json"),
            "first_loss": losses[0] if losses else None, "last_loss": statistics.mean(losses[-5:]) if losses else None,
            "budget": list(budget(task, args)), "load": os.getloadavg()[0]}


def child_args(args) -> list[str]:
    """The child's command-line options: everything that shapes a cell."""
    out = ["--threads", str(args.threads), "--eval-examples", str(args.eval_examples or 0), "--layers",
           str(args.layers or 0), "--split", args.split, "--steps", str(args.steps or 0), "--batch", str(args.batch or 0)]
    out += [f"--budget={t}={n}x{b}" for t, (n, b) in getattr(args, "budgets", {}).items()]
    if args.lr:
        out += ["--lr", repr(args.lr)]
    if args.params:
        out += ["--params", args.params]
    return out


def run_cell(task: str, method: str, args) -> dict:
    """Run one cell in a fresh subprocess; returns its JSON result or {"error": ...}."""
    cmd = [sys.executable, __file__, "--child", task, method, *child_args(args)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"),
           "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"task": task, "method": method, "error": tail[:200]}


def capabilities() -> list[str]:
    """The registry as a markdown table: what each method trains, its default lr and what it can do."""
    from lmforge.methods import METHODS

    lines = ["| method | trains | default lr | merge for export | quantized base | packing | objectives |",
             "|---|---|---|---|---|---|---|"]
    for name, spec in sorted(METHODS.items()):
        objectives = ", ".join(spec.objectives) if spec.objectives else "all"
        lines.append(f"| `{name}` | {spec.trains} | {spec.default_lrs()} | "
                     f"{'yes' if spec.mergeable else 'no (exported on its own)'} | "
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
        epochs = spec.epochs_for("sequence_classification")
        lines += [f"### `{name}`", "", f"Default lr (when `train.lr` is not set): {spec.default_lrs()}."
                  + (f" Default `train.epochs` on a classification head: {epochs:g} (else 1)." if epochs != 1 else ""), ""]
        if not fields:
            lines += ["No parameters.", ""]
            continue
        lines += ["| parameter | default | meaning |", "|---|---|---|"]
        for field, info in fields.items():
            default = "(required)" if info.is_required() else json.dumps(info.get_default(call_default_factory=True))
            lines.append(f"| `{field}` | `{default}` | {info.description or ''} |")
        lines.append("")
    return lines


def cpu_model() -> str:
    """The CPU's model name (lscpu / /proc/cpuinfo), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def from_logs(paths: list[str]) -> dict:
    """{task: {method: row}} from JSON-lines logs of heldout cells (a later row of a cell replaces an earlier one)."""
    results: dict = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            row = json.loads(line) if line.strip() else None
            if row and row.get("split", "heldout") == "heldout":
                results.setdefault(row["task"], {})[row["method"]] = row
    order = list(TASKS)
    return {task: dict(sorted(results[task].items())) for task in sorted(results, key=order.index)}


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _test_slice(spec: dict) -> str:
    """Which records of the test file a task reports on, when it skips some (``test_from``)."""
    skip = spec.get("test_from", 0)
    if not skip:
        return ""
    test = spec["data"]["test"]
    return f" (records {skip + 1}-{test['limit']} of {test['path'].removeprefix('asset:')})"


def measured(results: dict, args, seconds: float) -> list[str]:
    """One table per task plus how it was produced."""
    from lmforge.methods import METHODS

    command = getattr(args, "command", None) or " ".join(["benchmarks/methods_table.py", *sys.argv[1:]])
    loads = [r["load"] for rows in results.values() for r in rows.values() if "load" in r]
    lines = [f"Every registered method at its own defaults (lr included: column lr is the method's default the plan "
             f"filled in; parameters: the defaults, except freeze with `last_layers: 2`), fp32, {args.threads} CPU "
             "thread(s) per run, lmforge's training loop (AdamW, 5% warmup, cosine decay), the same batches in the "
             "same order for every method. **before** is the test-split score with the method applied but untrained "
             "(new heads and virtual tokens at their initial values), **after** the score after training; "
             "**change** is after - before with its paired-bootstrap 95% interval (1000 resamples of the held-out "
             "examples); **beyond noise** when that interval excludes 0 in the better direction.", "",
             f"Produced by `.venv/bin/python {command}` on {cpu_model()} ({platform.machine()}, {os.cpu_count()} cores "
             f"shared with other jobs; 1-minute load average {min(loads, default=0):.1f}-{max(loads, default=0):.1f} "
             f"during the runs), {time.strftime('%Y-%m-%d', time.gmtime())}, {seconds / 60:.0f} min of cell wall time. Wall times "
             "per step are therefore inflated and only comparable within one table.", ""]
    if args.layers:
        lines += [f"**Smoke scale**: models cut to their first {args.layers} transformer layers "
                  "(`model.overrides.num_hidden_layers`); numbers show the pipeline works, not method quality.", ""]
    for task, rows in results.items():
        spec = TASKS[task]
        first = next((r for r in rows.values() if "n_train" in r), {})
        budgets = [tuple(r["budget"]) for r in rows.values() if r.get("budget")]
        steps, batch = statistics.mode(budgets) if budgets else budget(task, args)
        other = sorted({m for m, r in rows.items() if r.get("budget") and tuple(r["budget"]) != (steps, batch)})
        lines += [f"### {task} ({spec['model']['name']}, {spec['data']['format']}; {spec['metric']})", "",
                  f"Budget: {steps} optimizer steps of batch {batch} ({steps * batch} examples seen)"
                  + (f" ({', '.join(other)}: the steps x batch in their row)" if other else "") + " on "
                  f"{first.get('n_train', '?')} training examples, max_length {spec['data']['max_length']}; "
                  f"{first.get('n_eval', '?')} test examples{_test_slice(spec)} (they chose nothing).", "",
                  f"| method | before | after | change [95% interval] | p | beyond noise | trainable params | % of model | "
                  "peak memory (MiB) | s / step | steps x batch | lr | mergeable |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for method, r in rows.items():
            merge = "yes" if METHODS[method].mergeable else "no"
            if "error" in r:
                lines.append(f"| {method} | failed: {r['error']} | | | | | | | | | | | {merge} |")
                continue
            change = f"{_signed(r['difference'])} [{_signed(r['low'])}, {_signed(r['high'])}]"
            p = "-" if r.get("p_value") is None else f"{r['p_value']:.3f}"
            lines.append(f"| {method} | {r['before']:.4f} | {r['value']:.4f} | {change} | {p} | "
                         f"{'yes' if r['beyond_noise'] else '**no**'} | {r['trainable']:,} | "
                         f"{100 * r['trainable'] / r['total']:.3f} | {r['peak_mib']:.0f} ({r['peak_kind']}) | "
                         f"{r['s_per_step']:.2f} | {'x'.join(map(str, r.get('budget') or (steps, batch)))} | "
                         f"{r['lr']:g} | {merge} |")
        lines.append("")
    return lines + ["Peak memory is the whole process's peak RSS on CPU (Python, libraries, data, model, optimizer), "
                    "or the CUDA allocator peak on a GPU.", ""]


DEFAULTS = """
## Default hyperparameters per method

`train.lr` left unset means the method's own default (column default lr above). `lmforge methods` prints
it, and the run folder's `config.yaml` (the resolved config) records the value the run used; a `train.lr`
you set always wins. Prefix tuning also starts from real key/values by default (`init: vocab`: the frozen
model's own keys and values for random vocabulary tokens, instead of peft's N(0, 1) values, which raised
SmolLM2's FiQA loss from 3.49 to 6.37 before any training); `init: random` restores peft's.

Each default was chosen by `benchmarks/method_defaults.py` on **validation splits carved from the table's
training data** (a seeded 20% of the 1,200 sentiment training reviews, stratified by label; a seeded 15%
of the 583 FiQA training questions): trained on the rest, scored on that share. The test examples
reported above chose nothing. The rule: among a method's candidate rates that beat their before score
beyond noise on both validation splits, the best mean rank over the two tasks. The candidates, their
validation scores and budgets are in benchmarks/RESULTS.md ("Per-method defaults").

Where no candidate beat its before score on sentiment's validation split (prefix tuning, P-tuning), the
default is the best on FiQA.

**Classification heads** take four defaults of their own (`classification_lr`, `classification_epochs`;
`lmforge methods` prints them). LoRA and QLoRA train classifiers at 5e-4: at 1e-3 the first sentiment
table's LoRA and QLoRA runs collapsed to the majority class (F1 0.383) right after warmup, although 1e-3
was best on the validation split (0.785; 5e-4: 0.781). Prefix tuning and P-tuning train classifiers for
6 epochs instead of 1 (after 2.5 epochs both were still at the majority class), P-tuning at 3e-2 (at
3e-3 it was still at the majority class after 6 epochs). These four choices were made after seeing that
table's test reviews (1-300 of reviews-test), so the sentiment table above reports on reviews 301-600,
which chose nothing; prefix tuning and P-tuning run 900 steps there (6 epochs of the 1,200 reviews,
their default), the others 300. P-tuning is the weakest method on sentiment: prefer LoRA, the adapter,
full or `freeze` (with `head: pooled`) for a small encoder classifier.
"""

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
        lines += ["Not measured yet. Produce it with", "", "```", ".venv/bin/python benchmarks/methods_table.py",
                  "```", "", "which rewrites this file with one table per task: before / after held-out metric with "
                  "a paired interval, trainable parameters, peak memory and time per step, every method at its "
                  "defaults on the same batches and step budget.", ""]
    return "\n".join(lines + parameters()) + DEFAULTS + FREEZE_POOLED


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("TASK", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps of every task (default: TASKS budget)")
    parser.add_argument("--batch", type=int, default=0, help="batch size of every task (default: TASKS budget)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-examples", type=int, default=0, help="first N held-out examples (0 = all)")
    parser.add_argument("--layers", type=int, default=0, help="cut models to N layers (smoke scale); 0 = all")
    parser.add_argument("--budget", action="append", default=[], metavar="TASK=STEPSxBATCH",
                        help="per-task budget, e.g. sentiment=100x8 (default: TASKS)")
    parser.add_argument("--split", choices=["heldout", "validation"], default="heldout",
                        help="validation: carve a split from the training data and log to --log (chooses defaults)")
    parser.add_argument("--lr", type=float, default=None, help="override every method's default lr")
    parser.add_argument("--params", default=None, help="JSON of method parameters over the defaults")
    parser.add_argument("--log", default=None, help="append each cell's JSON result here")
    parser.add_argument("--write", default=str(ROOT / "docs" / "methods.md"))
    parser.add_argument("--no-run", action="store_true", help="write the capability table only (no measurements)")
    parser.add_argument("--render", nargs="+", default=None, metavar="LOG",
                        help="write --write from the heldout cells of these logs (no runs)")
    parser.add_argument("--command", default=None, help="with --render: the command(s) that produced the logs")
    args = parser.parse_args(argv)
    args.eval_examples = args.eval_examples or None
    args.budgets = {}
    for item in args.budget:
        task, _, size = item.partition("=")
        steps, _, batch = size.partition("x")
        if task not in TASKS or not steps.isdigit() or not batch.isdigit():
            parser.error(f"--budget {item!r}: use TASK=STEPSxBATCH with TASK in {', '.join(TASKS)}")
        args.budgets[task] = (int(steps), int(batch))
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.child:
        print("RESULT " + json.dumps(measure(*args.child, args)), flush=True)
        return 0
    from lmforge.atomic import atomic_write_text
    from lmforge.methods import METHODS

    if args.render:
        results = from_logs(args.render)
        seconds = sum(r.get("wall_s", 0) for rows in results.values() for r in rows.values())
        atomic_write_text(Path(args.write), render(results, args, seconds))
        print(f"wrote {args.write}")
        return 0
    began = time.perf_counter()
    results: dict = {}
    for task in [] if args.no_run else args.tasks:
        results[task] = {}
        for method in args.methods or sorted(METHODS):
            results[task][method] = row = run_cell(task, method, args)
            print(json.dumps(row), flush=True)
            if args.log:
                with open(args.log, "a") as log:
                    log.write(json.dumps({**row, "lr_given": args.lr, "params_given": args.params}) + "\n")
    if args.split == "heldout" and not args.log:
        atomic_write_text(Path(args.write), render(results, args, time.perf_counter() - began))
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
