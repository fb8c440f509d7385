"""Glue: config -> data -> model -> method/objective -> train -> evaluate -> export.

Short and readable top to bottom; every stage does its own work. Heavy imports happen inside the
functions so `lmforge validate` (which only needs :mod:`lmforge.plan`) stays torch-free.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lmforge.atomic import atomic_write_text
from lmforge.config import RunConfig, save_resolved
from lmforge.errors import UserError
from lmforge.plan import RunPlan, plan_run

log = logging.getLogger("lmforge")


@dataclass
class Session:
    """Everything a run has loaded, built once and shared by train / eval / export."""

    plan: RunPlan
    run_dir: Path
    tokenizer: Any
    objective: Any
    method: Any
    task: Any
    model: Any
    splits: Any
    train_features: list
    eval_features: list
    collate: Callable
    tasks: list = field(default_factory=list)  # multi-task runs: lmforge.data.tasks.TaskData per task
    task_labels: list | None = None  # multi-task classification: each task's label names

    @property
    def config(self) -> RunConfig:
        return self.plan.config

    def evaluate(self, model=None, per_example: bool = False) -> dict:
        from lmforge.evaluate import evaluate

        cfg = self.config
        batch_size = cfg.eval.batch_size or cfg.train.batch_size
        if self.tasks:  # overall + task/<name>/<metric>
            from lmforge.multitask import evaluate_session

            metrics = evaluate_session(self, model or self.model, batch_size, per_example)
        else:
            metrics = evaluate(self.objective, model or self.model, self.eval_features, self.collate, batch_size,
                               per_example=per_example)
        if cfg.eval.generate_metrics and cfg.data.format in ("chat", "instruction"):
            scores = _generation_scores(self, cfg.eval.generate_metrics, model)
            metrics.update({name: v["value"] for name, v in scores.items()})
        return metrics

    def generations(self, model=None) -> list[dict]:
        """Greedy answers on the first held-out prompts (chat / instruction data only)."""
        cfg = self.config
        n = max(cfg.eval.generations, cfg.eval.judge.examples if cfg.eval.judge else 0)
        if n == 0 or cfg.data.format not in ("chat", "instruction"):
            return []
        from lmforge.evaluate import sample_generations

        return sample_generations(
            model or self.model, self.tokenizer, self.splits.eval, cfg.data, n, cfg.eval.max_new_tokens
        )


def open_session(config: RunConfig, *, source: str = "<config>", say: Callable[[str], None] = print) -> Session:
    """Load data, tokenizer and model, apply the method, encode features."""
    plan = plan_run(config, source)
    from lmforge.data import label_set, load_splits
    from lmforge.methods import build_method
    from lmforge.model import load_model, load_tokenizer
    from lmforge import multitask
    from lmforge.objectives import build_objective

    tasks, task_labels = [], None  # multi-task runs (data.tasks): see lmforge.multitask
    if config.data.tasks:
        tasks, splits = multitask.load_task_data(config)
    elif config.data.prepare is not None:
        splits = prepare_splits(config, say=say)
    else:
        splits = load_splits(config.data, config.run.seed)
    say(f"data: {len(splits.train)} train / {len(splits.eval)} held-out examples ({config.data.format})")
    for t in tasks:
        say(f"  task {t.name}: {len(t.splits.train)} train / {len(t.splits.eval)} held-out ({t.data.format}, weight {t.weight:g})")
    tokenizer = load_tokenizer(config.model)
    objective = build_objective(plan.objective.name, plan.objective_params)
    classify = plan.objective.head == "sequence_classification"
    if tasks and classify:  # one head per task on a shared encoder
        task_labels = multitask.task_labels(tasks)
        task = multitask.multihead_task(tasks, task_labels)
    else:
        task = objective.task_info(label_set(splits.train + splits.eval, config.data) if classify else None)
    method = build_method(plan.method.name, plan.method_params)
    say(f"model: loading {config.model.name} ...")
    base = load_model(config.model, task, **method.load_kwargs())
    model = method.apply(base, task)
    if hasattr(objective, "bind"):  # preference objectives snapshot their reference model here
        objective.bind(model, tokenizer)
    if config.train.memory.activation_checkpointing:
        from lmforge.train.checkpointing import enable_activation_checkpointing

        ac = config.train.memory.activation_checkpointing
        enable_activation_checkpointing(model, "all" if ac is True else int(ac))
    if tasks:
        train_features, eval_features = multitask.encode_tasks(tasks, task_labels, objective, tokenizer, config, say)
    else:
        train_features = (_sharded_features(config, splits.train, objective, tokenizer, say) if config.train.memory.shards
                          else objective.encode(splits.train, tokenizer, config.data))
        eval_records = splits.eval[: config.eval.max_examples] if config.eval.max_examples else splits.eval
        eval_features = objective.encode(eval_records, tokenizer, config.data)
    if config.data.packing and isinstance(train_features, list):  # shards are packed as they are written
        from lmforge.data.packing import pack_features

        n_examples = len(train_features)
        train_features = pack_features(list(train_features), config.data.max_length)
        say(f"packing: {n_examples} examples -> {len(train_features)} rows of up to {config.data.max_length} tokens")
    if not train_features:
        raise UserError("no training example is left after encoding", where="data.train",
                        hint="check data.max_length and that examples have a completion to train on")
    return Session(
        plan=plan,
        run_dir=Path(config.run.dir),
        tokenizer=tokenizer,
        objective=objective,
        method=method,
        task=task,
        model=model,
        splits=splits,
        train_features=train_features,
        eval_features=eval_features,
        collate=(multitask.routed_collate(objective, tokenizer) if task_labels
                 else lambda feats: objective.collate(feats, tokenizer)),
        tasks=tasks,
        task_labels=task_labels,
    )


def _sharded_features(config: RunConfig, records: list, objective, tokenizer, say: Callable[[str], None]):
    """Training features memory-mapped from ``train.memory.shards`` (tokenized and packed once, block by
    block; reused while data, tokenizer and settings are unchanged). Only the main process writes."""
    from lmforge.data.shards import encode_to_shards
    from lmforge.train.launch import is_main_process

    where = config.train.memory.shards
    folder = Path(config.run.dir) / "shards" if where == "auto" else Path(where)
    key = {"data": config.data.model_dump(mode="json"), "model": config.model.model_dump(mode="json"),
           "objective": config.objective_name, "objective_params": config.objective and config.objective.params,
           "vocab": len(tokenizer)}
    pack = config.data.max_length if config.data.packing else None
    try:
        shards = encode_to_shards(records, lambda part: objective.encode(part, tokenizer, config.data), folder, key=key,
                                  pack_length=pack, write=is_main_process())
    except ValueError as exc:
        raise UserError(f"cannot use train.memory.shards: {exc}", where="train.memory.shards",
                        hint="point it at a new folder or one lmforge wrote shards into") from exc
    say(f"shards: {len(shards)} {'packed rows' if pack else 'examples'} ({shards.meta['tokens']} tokens) "
        f"memory-mapped from {folder}")
    return shards


def run_train(config: RunConfig, *, source: str = "<config>", resume: bool = False,
              say: Callable[[str], None] = print) -> dict:
    """Train a run end to end and return its report dict (also written to the run folder).

    Under a multi-process launcher every process trains; only the main process writes files,
    measures before / after and exports.
    """
    from lmforge.methods.base import count_parameters
    from lmforge.train import train
    from lmforge.train.launch import is_main_process
    from lmforge.train.threads import apply_thread_policy

    main = is_main_process()
    run_dir = Path(config.run.dir)
    if main:
        _check_run_dir(run_dir, resume)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_resolved(config, run_dir)
    s = open_session(config, source=source, say=say if main else (lambda _m: None))
    trainable, total = count_parameters(s.model)
    say(f"method: {s.plan.method.name} trains {trainable:,} of {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)")
    apply_thread_policy(config.train.threads, phase="before eval", say=say)
    before = _measure_before(s) if main else None
    last_eval: dict = {}

    def evaluate_fn(model) -> dict:
        last_eval["metrics"] = s.evaluate(model, per_example=True)  # the loop keeps only the scalars
        return last_eval["metrics"]

    result = train(
        s.model, s.objective, s.train_features,
        train_cfg=config.train, run_dir=run_dir, collate=s.collate, evaluate_fn=evaluate_fn,
        seed=config.run.seed, best_metric=s.plan.best_metric, metric_mode=s.plan.metric_mode, resume=resume,
    )
    if not main:
        return {}
    apply_thread_policy(config.train.threads, phase="after eval", say=say)
    _restore_best(s, reload=result.base_rounded)
    evals = [r for r in result.history if r.get("event") == "eval"]
    final_is_best = bool(evals) and evals[-1]["step"] == result.steps == result.best_step and not result.base_rounded
    # The loop's last evaluation already measured the best weights over the same base: reuse it
    # instead of a second pass (not when training rounded the frozen base to bf16: "after" is then
    # measured on the original base, like "before" and the exports).
    metrics = last_eval["metrics"] if final_is_best and "metrics" in last_eval else s.evaluate(per_example=True)
    after = {"metrics": metrics, "samples": s.generations()}
    report = _report(s, before and before["eval"], after, result, trainable, total)
    _judge_samples(s, report, ["before", "after"], say)
    if before and before["forgetting"] is not None:
        from lmforge.evaluate.forgetting import measure_forgetting

        report["forgetting"] = {"source": config.eval.forgetting, "before": before["forgetting"],
                                "after": measure_forgetting(s.model, s.tokenizer, before["forget_set"],
                                                            max_new_tokens=config.eval.max_new_tokens)}
    from lmforge.evaluate import format_comparison, write_report

    write_report(run_dir, report)
    say(format_comparison(before["eval"]["metrics"] if before and before["eval"] else {}, after["metrics"]))
    for sample in report["samples"]:
        say(f"\nprompt:    {sample['prompt'][-300:]}\nbefore:    {sample.get('before', '')[:300]}\nafter:     {sample['after'][:300]}")
    export_dir = export_session(s, report)
    save_drift_baseline(s)
    use = (f"load it:    lmforge.model.multihead.load_multihead('{export_dir / 'multitask'}')" if s.task_labels
           else f"serve it:   lmforge serve {run_dir}")
    say(f"\nrun folder: {run_dir}\nexported:   {export_dir}\n{use}")
    return report


def _measure_before(s: Session) -> dict:
    """Base-model metrics, generations and (optionally) the general-domain forgetting set, cached per run."""
    config = s.config
    evaluated = _cached(s.run_dir / "before.json",
                        lambda: {"metrics": s.evaluate(per_example=True), "samples": s.generations()},
                        enabled=config.eval.before)
    if evaluated:
        print("before: " + _brief(evaluated["metrics"]))
    forget_set = forgetting = None
    if config.eval.forgetting:
        from lmforge.evaluate.forgetting import load_forgetting_set, measure_forgetting

        forget_set = load_forgetting_set(config.eval.forgetting)
        forgetting = _cached(s.run_dir / "forgetting_before.json", lambda: measure_forgetting(
            s.model, s.tokenizer, forget_set, max_new_tokens=config.eval.max_new_tokens), enabled=True)
    return {"eval": evaluated, "forgetting": forgetting, "forget_set": forget_set}


def _restore_best(s: Session, reload: bool = False) -> None:
    """Load the best checkpoint's trained weights into an ordinary (unsharded) model; ``reload``:
    into a freshly loaded base (training stored the frozen weights rounded to bf16)."""
    from lmforge.train.checkpoint import load_trainable
    from lmforge.train.distributed import process_info

    if reload or (s.config.train.distributed.strategy == "fsdp" and process_info().world_size > 1):
        # FSDP leaves the trained model sharded across processes, a bf16 base leaves it rounded:
        # rebuild a whole one with the original weights to load into.
        s.model = None
        from lmforge.model import load_model

        s.model = s.method.apply(load_model(s.config.model, s.task, **s.method.load_kwargs()), s.task)
    for name in ("best", "last"):
        folder = s.run_dir / "checkpoints" / name
        if folder.exists():
            load_trainable(s.model, folder)
            return


def export_session(s: Session, report: dict) -> Path:
    """Write the adapter / merged model / extra formats and the model card; every export is parity-checked."""
    from lmforge.export import export_adapter, export_merged, file_sha256, verify_merged, write_model_card

    cfg = s.config
    out = Path(cfg.export.dir or s.run_dir / "export")
    out.mkdir(parents=True, exist_ok=True)
    s.model.eval()  # the parity reference is the model as evaluated (no dropout)
    written, parity = {}, {}
    prompts = _parity_prompts(s)
    if cfg.export.adapter and s.plan.method.name != "full":
        export_adapter(s.method, s.model, out / "adapter")
        written["adapter"] = str(out / "adapter")
    if s.task_labels:  # several classification heads: no plain transformers class holds them
        from lmforge.multitask import export_multitask

        written["multitask"], parity["multitask"] = export_multitask(s, out / "multitask")
    elif s.plan.export_merged:
        export_merged(s.method, s.model, s.tokenizer, out / "merged", cfg.export.dtype)
        written["merged"] = str(out / "merged")
        parity["merged"] = verify_merged(s.model, s.tokenizer, out / "merged", prompts, dtype=cfg.export.dtype,
                                         report_path=out / "merged" / "parity.json").to_dict()
    for fmt in cfg.export.formats:
        if "merged" not in written:
            raise UserError(f"export format {fmt} is built from the merged model", where="export.formats",
                            hint="keep export.merged on (the method must be mergeable)")
        written[fmt], parity[fmt] = _export_format(s, fmt, out, prompts)
    card = {
        "base_model": cfg.model.name,
        "method": {"name": s.plan.method.name, **s.plan.method_params.model_dump(mode="json")},
        "objective": s.plan.objective.name,
        "data_files": [{"path": str(p), "sha256": file_sha256(p)} for p in s.splits.files],
        "config": cfg.model_dump(mode="json"),
        "metrics": {side: {k: v for k, v in (report.get(side) or {}).items() if k != "per_example"}
                    for side in ("before", "after")},
        "exports": written,
        "parity": {k: {"passed": v["passed"], "max_abs_logit_diff": v["max_abs_logit_diff"]} for k, v in parity.items()},
    }
    write_model_card(out, card)
    return out


def _export_format(s: Session, fmt: str, out: Path, prompts: list) -> tuple[str, dict]:
    """GGUF (+ Ollama Modelfile) or ONNX from the merged folder, parity-checked against the run's model."""
    if fmt.startswith("gguf-"):
        from lmforge.export.gguf import export_gguf, verify_gguf
        from lmforge.export.modelfile import write_modelfile

        outtype = fmt.removeprefix("gguf-")
        path = export_gguf(out / "merged", out / fmt / "model.gguf", outtype)
        write_modelfile(path, s.tokenizer)
        result = verify_gguf(s.model, s.tokenizer, path, prompts, outtype=outtype, report_path=out / fmt / "parity.json")
        return str(path), result.to_dict()
    from lmforge.export.onnx import export_onnx, verify_onnx
    from lmforge.export.parity import load_merged

    merged, tokenizer = load_merged(out / "merged")
    folder = export_onnx(merged, tokenizer, out / "onnx")
    texts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
    result = verify_onnx(s.model, s.tokenizer, folder, texts, report_path=out / "onnx" / "parity.json")
    return str(folder), result.to_dict()


def _parity_prompts(s: Session) -> list:
    """A few held-out inputs: message lists for chat/instruction data, plain text otherwise."""
    from lmforge.data import prompt_messages

    records = s.splits.eval[: s.config.export.parity_prompts]
    if s.config.data.format in ("chat", "instruction"):
        return [prompt_messages(r, s.config.data) for r in records]
    # Parity decodes greedily with full recomputation: a document's opening is enough of a prompt.
    return [(r.get("text") or r.get("prompt") or "")[:400] for r in records]


def _report(s: Session, before: dict | None, after: dict, result, trainable: int, total: int) -> dict:
    from lmforge.multitask import task_summary

    cfg = s.config
    samples = []
    before_samples = (before or {}).get("samples") or []
    for i, sample in enumerate(after["samples"]):
        row = {"prompt": sample["prompt"], "reference": sample["reference"], "after": sample["output"]}
        if i < len(before_samples):
            row["before"] = before_samples[i]["output"]
        samples.append(row)
    return {
        "model": cfg.model.name,
        "method": s.plan.method.name,
        "objective": s.plan.objective.name,
        "data": {"format": cfg.data.format, "train_examples": len(s.splits.train), "eval_examples": len(s.splits.eval),
                 **task_summary(s)},
        "parameters": {"trainable": trainable, "total": total},
        "before": (before or {}).get("metrics"),
        "after": after["metrics"],
        "samples": samples,
        "train": {
            "steps": result.steps,
            "best_step": result.best_step,
            "best_metric": s.plan.best_metric,
            "stopped_early": result.stopped_early,
        },
    }


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    has_ckpt = (run_dir / "checkpoints" / "last").exists()
    if has_ckpt and not resume:
        raise UserError(
            "this run folder already holds checkpoints",
            where=str(run_dir),
            hint="continue it with --resume, or pick another run.name / run.output_dir",
        )


def _cached(path: Path, compute: Callable[[], dict], *, enabled: bool) -> dict | None:
    """Compute once per run folder (so --resume does not re-measure the base model)."""
    if not enabled:
        return None
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    atomic_write_text(path, json.dumps(value, indent=1))
    return value


def _brief(metrics: dict) -> str:
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float))][:5]
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in keys)


def restore_session(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), *, trained: bool = True,
                    say: Callable[[str], None] = print) -> Session:
    """Rebuild a finished run from its folder: saved config, base model, method, best trained weights."""
    from lmforge.config import load_config

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError("not a run folder (no config.yaml inside)", where=str(run_dir),
                        hint="pass the folder a `lmforge train` run wrote, e.g. runs/quickstart")
    config = load_config(cfg_path, list(overrides) + [f"run.output_dir={run_dir}"])
    s = open_session(config, source=str(cfg_path), say=say)
    if trained:
        from lmforge.train.checkpoint import load_trainable

        ckpt = next((run_dir / "checkpoints" / n for n in ("best", "last") if (run_dir / "checkpoints" / n).exists()), None)
        if ckpt is None:
            raise UserError("the run has no checkpoint yet", where=str(run_dir), hint="train it first (lmforge train)")
        load_trainable(s.model, ckpt)
    return s


def run_eval(target: str, overrides: list[str] | tuple[str, ...] = (), *, base: bool = False,
             data: str | None = None, generate: int = 0, out_dir: str | None = None,
             say: Callable[[str], None] = print) -> dict:
    """Evaluate a run folder's trained model (or, with ``base``, its base) or a config's base model.

    ``data`` replaces the held-out set; ``generate`` N scores greedy answers on the first N held-out
    chat / instruction examples (exact match, token F1, ROUGE, BLEU with bootstrap intervals).
    Writes report.md / report.html / results.json into ``out_dir`` (default <run dir>/eval).
    """
    from lmforge.config import load_config
    from lmforge.evaluate import write_report

    overrides = list(overrides) + ([f"data.eval={data}"] if data else [])
    path = Path(target)
    if path.is_dir():
        s = restore_session(path, overrides, trained=not base, say=say)
    else:
        s = open_session(load_config(path, overrides), source=str(path), say=say)
    s.model.eval()
    from lmforge.train.threads import apply_thread_policy

    apply_thread_policy(s.config.train.threads, phase="eval", say=say)
    metrics = s.evaluate(per_example=True)
    samples = s.generations()
    report = {"model": s.config.model.name + (" (base)" if base else ""), "method": s.plan.method.name,
              "objective": s.plan.objective.name, "after": metrics,
              "samples": [{"prompt": x["prompt"], "reference": x["reference"], "after": x["output"]} for x in samples]}
    _judge_samples(s, report, ["after"], say)
    if generate and s.config.data.format in ("chat", "instruction"):
        report["generation"] = _generation_scores(s, generate)
        metrics = {**metrics, **{k: v["value"] for k, v in report["generation"].items()}}
    out = Path(out_dir) if out_dir else (path if path.is_dir() else s.run_dir) / ("eval-base" if base else "eval")
    write_report(out, report)
    for sample in samples:
        say(f"\nprompt: {sample['prompt'][-300:]}\noutput: {sample['output'][:300]}")
    for name, v in (report.get("generation") or {}).items():
        say(f"{name:<12} {v['value']:.4f}  [{v['low']:.4f}, {v['high']:.4f}]")
    say(f"report: {out / 'report.html'}")
    return metrics


def _judge_samples(s: Session, report: dict, systems: list[str], say: Callable[[str], None]) -> None:
    """Grade the report's sample answers with ``eval.judge`` (when set) into ``report["judge"]``;
    the report then shows only the first ``eval.generations`` samples."""
    cfg = s.config.eval.judge
    if cfg is None or not report.get("samples"):
        return
    from lmforge.evaluate.judge import DEFAULT_PROMPT, Judge, judge_outputs

    judge = Judge(base_url=cfg.url, model=cfg.model, api_key_env=cfg.api_key_env,
                  prompt=cfg.prompt or DEFAULT_PROMPT, scale=cfg.scale)
    say(f"judge: {cfg.model} at {cfg.url} grades {len(report['samples'])} answers per system ...")
    report["judge"] = judge_outputs(judge, report["samples"], systems)
    say("judge: " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in report["judge"]["systems"].items())
        + f" (1..{cfg.scale})")
    report["samples"] = report["samples"][: s.config.eval.generations]


def _generation_scores(s: Session, n: int, model=None) -> dict:
    """Greedy answers on the first ``n`` held-out examples, scored against their references."""
    from lmforge.evaluate import sample_generations
    from lmforge.evaluate.textmetrics import generation_intervals

    rows = sample_generations(model or s.model, s.tokenizer, s.splits.eval, s.config.data, n,
                              s.config.eval.max_new_tokens)
    return generation_intervals([r["output"] for r in rows], [r["reference"] for r in rows], seed=s.config.run.seed)


def run_export(run_dir: str, overrides: list[str] | tuple[str, ...] = (), *, say: Callable[[str], None] = print) -> Path:
    s = restore_session(run_dir, overrides, say=say)
    results = Path(run_dir) / "results.json"
    report = json.loads(results.read_text()) if results.exists() else {"after": s.evaluate()}
    return export_session(s, report)


def describe_methods(model_name: str | None = None, num_labels: int | None = None) -> str:
    """A table of every registered method: what it trains, capabilities, guidance (+ trainable counts)."""
    from lmforge.methods import METHODS

    counts: dict[str, str] = {}
    if model_name:
        counts = _trainable_counts(model_name, num_labels)
    lines = []
    for name, spec in sorted(METHODS.items()):
        caps = ["mergeable" if spec.mergeable else "not mergeable (exported on its own)"]
        if spec.quantized_base:
            caps.append("quantized base")
        caps.append("objectives: " + (", ".join(spec.objectives) if spec.objectives else "all"))
        lines.append(f"{name}\n  trains:   {spec.trains}\n  can:      {'; '.join(caps)}")
        if name in counts:
            lines.append(f"  params:   {counts[name]}")
        if spec.guidance:
            lines.append(f"  guidance: {spec.guidance}")
    return "\n".join(lines)


def _trainable_counts(model_name: str, num_labels: int | None) -> dict[str, str]:
    from lmforge.config import ModelConfig
    from lmforge.methods import METHODS, build_method
    from lmforge.methods.base import count_parameters
    from lmforge.model import load_model
    from lmforge.model.task import TaskInfo

    task = (TaskInfo("sequence_classification", num_labels, tuple(f"label_{i}" for i in range(num_labels)))
            if num_labels else TaskInfo("causal_lm"))
    out = {}
    for name, spec in sorted(METHODS.items()):
        try:
            method = build_method(name, spec.params())
            model = method.apply(load_model(ModelConfig(name=model_name), task, **method.load_kwargs()), task)
        except UserError as exc:
            out[name] = f"n/a ({str(exc).splitlines()[0]})"
            continue
        trainable, total = count_parameters(model)
        out[name] = f"{trainable:,} trainable of {total:,} ({100 * trainable / max(total, 1):.2f}%)"
    return out


def load_serve_config(path: str | None, overrides: list[str]):
    """Server settings from an optional YAML file plus KEY=VALUE overrides, validated strictly."""
    import yaml
    from pydantic import ValidationError

    from lmforge.config.load import apply_overrides, format_validation_error
    from lmforge.config.serve import ServeConfig

    raw: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise UserError("server config not found", where=str(p))
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    try:
        return ServeConfig.model_validate(apply_overrides(raw, overrides))
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, ServeConfig), where=path or "command line") from None


def save_drift_baseline(s: Session, limit: int = 48) -> Path:
    """Statistics of the training inputs that `lmforge monitor` compares served traffic with."""
    from lmforge.data import prompt_messages
    from lmforge.serve.drift import compute_baseline, save_baseline

    records = s.splits.train[:limit]
    fmt = s.config.data.format
    if fmt in ("chat", "instruction"):
        texts = [prompt_messages(r, s.config.data) for r in records]
    else:
        texts = [(r.get("text") or r.get("prompt") or "")[:2000] for r in records]
    model = s.model
    baseline = compute_baseline(model, s.tokenizer, texts)
    return save_baseline(s.run_dir / "monitor" / "baseline.json", baseline)


def prepare_splits(config: RunConfig, *, out_dir: str | Path | None = None, say: Callable[[str], None] = print):
    """Run the data-preparation rules (data.prepare) and return the prepared train / validation splits.

    Outputs, manifest and report go to ``out_dir`` (default <run dir>/data). Test examples stay in
    test.jsonl there, untouched by training. The prepared splits are read back as lists (training
    needs them); :func:`prepare_data` alone streams and reads nothing back.
    """
    from lmforge.data import Splits

    result, files = prepare_data(config, out_dir=out_dir, say=say)
    return Splits(result.train, result.validation, files)


def prepare_data(config: RunConfig, *, out_dir: str | Path | None = None, say: Callable[[str], None] = print):
    """Prepare ``config.data`` into ``out_dir`` in bounded memory; returns (PrepareResult, input files).

    JSONL / CSV / plain-text inputs are read record by record (lmforge.data.splits.load_records_lazily);
    only counts are reported. UserError when no validation example is left.
    """
    from lmforge.config.prepare import PrepareConfig
    from lmforge.data.prepare import run_prepare as prepare
    from lmforge.data.splits import load_records_lazily

    from lmforge.model import load_tokenizer

    prepare_cfg = config.data.prepare or PrepareConfig()
    streams = load_records_lazily(config.data)
    out = Path(out_dir or Path(config.run.dir) / "data")
    result = prepare(streams.train, config.data.format, prepare_cfg, out, inputs=streams.files, seed=config.run.seed,
                     eval_records=streams.eval, tokenizer=load_tokenizer(config.model),
                     paraphrase=_paraphraser(prepare_cfg, config.run.seed, say))
    counts = result.counts
    say(f"prepare: {streams.read} records -> train {counts['train']}, "
        f"validation {counts['validation']}, test {counts['test']}; report {result.report_path}")
    if not counts["validation"]:
        raise UserError("data preparation left no validation example", where="data.prepare.split",
                        hint="raise the validation ratio or give data.eval")
    return result, list(streams.files)


def _paraphraser(prepare_cfg, seed: int, say: Callable[[str], None]):
    """The model paraphraser ``augment.paraphrase`` names (loaded here: data may not import model), or None."""
    pcfg = prepare_cfg.augment.paraphrase
    if not pcfg:
        return None
    from lmforge.config.schema import ModelConfig
    from lmforge.data.prepare.paraphrase import ModelParaphraser
    from lmforge.model import load_model, load_tokenizer
    from lmforge.model.task import TaskInfo

    say(f"prepare: loading {pcfg.model} to paraphrase training texts ...")
    model_cfg = ModelConfig(name=pcfg.model)
    tokenizer = load_tokenizer(model_cfg)
    return ModelParaphraser(load_model(model_cfg, TaskInfo("causal_lm")).eval(), tokenizer, pcfg, seed)


def run_prepare(config: RunConfig, *, source: str = "<config>", out_dir: str | None = None,
                say: Callable[[str], None] = print) -> Path:
    """`lmforge data prepare`: clean, deduplicate, redact, label-check and split; returns the output folder."""
    plan_run(config, source)
    out = Path(out_dir or Path(config.run.dir) / "data")
    prepare_data(config, out_dir=out, say=say)
    return out


def run_estimate(config: RunConfig, *, source: str = "<config>", budget_gb: float | None = None,
                 say: Callable[[str], None] = print) -> dict:
    """`lmforge estimate`: predicted peak memory and time per step for this exact run (+ what fits a budget)."""
    from lmforge.methods.base import count_parameters
    from lmforge.train.estimate import estimate, suggest
    from lmforge.train.runtime import build_runtime

    s = open_session(config, source=source, say=lambda _m: None)
    trainable, _total = count_parameters(s.model)
    lengths = [len(f["input_ids"]) for f in s.train_features]
    runtime = build_runtime(config.train, config.run.seed)
    params = s.plan.method_params
    frozen_bits = int(getattr(params, "bits", 32)) if s.plan.method.quantized_base else runtime.base_dtype.itemsize * 8
    full = s.plan.method.name == "full"
    est = estimate(
        s.model.config, None if full else trainable, precision=runtime.precision, batch_size=config.train.batch_size,
        seq_lengths=lengths, packing=config.data.packing,
        activation_checkpointing=bool(config.train.memory.activation_checkpointing),
        frozen_bits=frozen_bits, max_length=config.data.max_length, grad_accumulation=config.train.grad_accum,
        optimizer=config.train.optimizer,
    )
    say(f"{config.model.name} / {s.plan.method.name} / {runtime.precision} / batch {config.train.batch_size} x "
        f"accum {config.train.grad_accum} / {len(lengths)} {'packed rows' if config.data.packing else 'examples'} "
        f"(median {sorted(lengths)[len(lengths) // 2]} tokens)")
    say(est.summary())
    out = {"peak_bytes": est.peak_bytes, "time_per_step_s": est.time_per_step_s, "breakdown": est.breakdown}
    if budget_gb is not None:
        fits = suggest(est, budget_gb * 2**30)
        if est.peak_bytes <= budget_gb * 2**30:
            say(f"fits in {budget_gb:g} GiB as configured")
        elif fits:
            say(f"to fit in {budget_gb:g} GiB:")
            for f in fits:
                say(f"  {f.change}: {f.estimate.peak_bytes / 2**30:.2f} GiB, {f.estimate.time_per_step_s:.2f} s/step")
        else:
            say(f"nothing suggested fits in {budget_gb:g} GiB: try a smaller model")
        out["suggestions"] = [f.change for f in fits]
    return out
