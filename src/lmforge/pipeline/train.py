"""`lmforge train` / `lmforge quickstart`: evaluate the base, train, evaluate again, report, export.

Under a multi-process launcher every process trains; only the main process writes files, measures
before / after and exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from lmforge import progress, status
from lmforge.atomic import atomic_write_text
from lmforge.config import RunConfig, save_resolved
from lmforge.pipeline.report import build_report, judge_samples, print_samples
from lmforge.pipeline.session import Session, best_checkpoint, open_session, rebuild_model

Say = Callable[[str], None]


def run_train(config: RunConfig, *, source: str = "<config>", resume: bool = False, say: Say = print,
              callbacks: list | None = None) -> dict:
    """Train a run end to end and return its report dict (also written to the run folder).

    The main process keeps ``<run>/status.json`` (phase, step k/N, ETA, heartbeat; :mod:`lmforge.status`).
    ``callbacks``: extra training-loop callbacks (:class:`lmforge.train.Callback`).
    """
    from lmforge.train.launch import is_main_process

    with status.tracking(config.run.dir, enabled=is_main_process()):
        return _run_train(config, source=source, resume=resume, say=say, callbacks=callbacks)


def _run_train(config: RunConfig, *, source: str, resume: bool, say: Say, callbacks: list | None) -> dict:
    from lmforge.evaluate.report import format_comparison, write_report
    from lmforge.methods.base import count_parameters
    from lmforge.pipeline.export import export_session, save_drift_baseline
    from lmforge.train import train
    from lmforge.train.launch import is_main_process
    from lmforge.train.threads import apply_thread_policy

    main = is_main_process()
    run_dir = Path(config.run.dir)
    if main:
        from lmforge.pipeline.plan import plan_run
        from lmforge.train.run_folder import check_resume_inputs, check_resume_settings, open_run_folder, record_inputs

        from lmforge.train.runtime import check_precision

        plan = plan_run(config, source)  # a config problem is reported before anything is written
        check_precision(config.runtime)  # and one this machine cannot run (e.g. int8 where it is not exact)
        open_run_folder(config, resume)  # new / empty / lmforge's, apart from the inputs; checkpoints need --resume
        if resume:  # the settings and the data the weights were trained with
            check_resume_settings(plan.resolved_config(), run_dir)
            check_resume_inputs(config, run_dir)
        save_resolved(plan.resolved_config(), run_dir)
        record_inputs(config, run_dir)
        status.set_phase("load")
    session = open_session(config, source=source, say=say if main else (lambda _m: None))
    trainable, total = count_parameters(session.model)
    say(f"method: {session.plan.method.name} trains {trainable:,} of {total:,} parameters "
        f"({100 * trainable / max(total, 1):.2f}%)")
    status.set_phase("before-eval")
    apply_thread_policy(config.runtime.threads, phase="before eval", say=say)
    before = measure_before(session, say) if main else None
    last_eval: dict = {}

    def evaluate_fn(model) -> dict:  # validation only: the test part never reaches checkpoint choice
        with progress.phase("validation"):
            last_eval["metrics"] = session.evaluate(model, per_example=True, part="validation")
        return last_eval["metrics"]  # the loop keeps only the scalars

    if session.selection is None:  # no validation data: keep the last step
        evaluate_fn = None  # type: ignore[assignment]
    solved = solve(session, evaluate_fn, say)  # a method that solves its parameters replaces the loop
    result = solved or train(
        session.model, session.objective, session.train_features,
        train_cfg=session.config.train, runtime_cfg=config.runtime, run_dir=run_dir, collate=session.collate, evaluate_fn=evaluate_fn,
        seed=config.run.seed, best_metric=session.plan.best_metric, metric_mode=session.plan.metric_mode,
        resume=resume, callbacks=callbacks,
    )
    if not main:
        return {}
    status.set_phase("after-eval")
    apply_thread_policy(config.runtime.threads, phase="after eval", say=say)
    if result.base_rounded or fsdp_sharded(config):
        # FSDP leaves the trained model sharded across processes, a bf16 base leaves it rounded: free it
        # first, then rebuild a whole one with the original weights to load the best checkpoint into.
        session = session.with_model(None)
        session = rebuild_model(session)
    load_best(session)
    evals = [r for r in result.history if r.get("event") == "eval"]
    final_is_best = bool(evals) and evals[-1]["step"] == result.steps == result.best_step and not result.base_rounded
    # Without test data the reported part is validation: the loop's last evaluation already measured the
    # best weights there over the same base, so it is reused instead of a second pass (not when training
    # rounded the frozen base to bf16: "after" is then measured on the original base, like "before").
    reuse = final_is_best and session.reported == session.selection and "metrics" in last_eval
    with progress.phase("after"):
        metrics = last_eval["metrics"] if reuse else session.evaluate(per_example=True)
        after = {"metrics": metrics, "samples": session.generations()}
    report = build_report(session, before and before["eval"], after, result, trainable, total)
    if before and before["eval"] and before["eval"].get("validation"):
        report["before_validation"] = before["eval"]["validation"]  # the base model's point on the curves
    with progress.phase("judge"):
        judge_samples(session, report, ["before", "after"], say)
    if before and before["forgetting"] is not None:
        from lmforge.evaluate.forgetting import measure_forgetting

        with progress.phase("after, forgetting"):
            forgotten = measure_forgetting(session.model, session.tokenizer, before["forget_set"],
                                           max_new_tokens=config.eval.max_new_tokens)
        report["forgetting"] = {"source": config.eval.forgetting, "before": before["forgetting"],
                                "after": forgotten}
    write_report(run_dir, report)
    say(format_comparison(before["eval"]["metrics"] if before and before["eval"] else {}, after["metrics"]))
    print_samples(report["samples"], say)
    status.set_phase("export")
    with progress.phase("export"):
        export_dir = export_session(session, report)
    with progress.phase("drift baseline"):
        save_drift_baseline(session)
    say(f"\nrun folder: {run_dir}\nexported:   {export_dir}\n{session.tasks.usage(session, export_dir)}")
    return report


def solve(session: Session, evaluate_fn: Callable, say: Say):
    """``method.fit`` (freeze's pooled linear head: L-BFGS on the frozen features) recorded as a one-step
    run (lmforge.train.fitted); None when the method trains with the loop."""
    summary = session.method.fit(session.model, session.train_features, session.collate, seed=session.config.run.seed)
    if not summary:
        return None
    from lmforge.train.fitted import record_fit

    chosen = f"chosen by {summary['folds']}-fold cross-validation on train" if summary["folds"] else "method.c"
    say(f"method: solved the head on {summary['examples']} training examples in {summary['seconds']:.1f} s "
        f"(L2: C {summary['c']:g}, {chosen}); train.epochs / lr do not apply")
    return record_fit(session.model, summary, train_cfg=session.config.train, run_dir=session.run_dir, evaluate_fn=evaluate_fn,
                      best_metric=session.plan.best_metric)


def measure_before(session: Session, say: Say) -> dict:
    """Base-model metrics, generations and (optionally) the general-domain forgetting set, cached per run."""
    config = session.config
    def base() -> dict:
        with progress.phase("before"):
            out = {"metrics": session.evaluate(per_example=True), "samples": session.generations()}
        if session.selection is not None and session.selection != session.reported:  # step 0 of the validation curves
            with progress.phase("before, validation"):
                out["validation"] = {k: v for k, v in session.evaluate(part=session.selection).items()
                                     if k != "per_example"}
        return out

    evaluated = cached(session.run_dir / "before.json", base, enabled=config.eval.before)
    if evaluated:
        say("before: " + brief(evaluated["metrics"]))
    forget_set = forgetting = None
    if config.eval.forgetting:
        from lmforge.evaluate.forgetting import load_forgetting_set, measure_forgetting

        forget_set = load_forgetting_set(config.eval.forgetting)
        with progress.phase("before, forgetting"):
            forgetting = cached(session.run_dir / "forgetting_before.json", lambda: measure_forgetting(
                session.model, session.tokenizer, forget_set, max_new_tokens=config.eval.max_new_tokens), enabled=True)
    return {"eval": evaluated, "forgetting": forgetting, "forget_set": forget_set}


def fsdp_sharded(config: RunConfig) -> bool:
    from lmforge.train.distributed import process_info

    return config.runtime.distributed.strategy == "fsdp" and process_info().world_size > 1


def load_best(session: Session) -> None:
    """Load the best (else last) checkpoint's trained weights into the session's model."""
    from lmforge.train.checkpoint import load_trainable

    folder = best_checkpoint(session.run_dir)
    if folder is not None:
        load_trainable(session.model, folder)


def cached(path: Path, compute: Callable[[], dict], *, enabled: bool) -> dict | None:
    """Compute once per run folder (so --resume does not re-measure the base model)."""
    if not enabled:
        return None
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    atomic_write_text(path, json.dumps(value, indent=1))
    return value


def brief(metrics: dict) -> str:
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float))][:5]
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in keys)


def launch_processes(argv: list[str], nproc: int) -> int:
    """Run ``lmforge <argv>`` in ``nproc`` processes on this machine (torchrun); returns the exit status."""
    from lmforge.train.launch import launch

    return launch(argv, nproc)
