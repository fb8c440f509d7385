"""`lmforge eval`: a finished run's trained model (or its base, or a config's base model) on held-out data."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from lmforge import progress
from lmforge.pipeline.configfile import load_run_config
from lmforge.pipeline.report import elide, judge_samples
from lmforge.pipeline.session import generation_scores, open_session, restore_session

Say = Callable[[str], None]


def run_eval(target: str, overrides: Sequence[str] = (), *, base: bool = False, data: str | None = None,
             generate: int = 0, out_dir: str | None = None, say: Say = print) -> dict:
    """Evaluate a run folder's trained model (or, with ``base``, its base) or a config's base model.

    ``data`` replaces the held-out set; ``generate`` N scores greedy answers on the first N held-out
    generative examples (exact match, token F1, ROUGE, BLEU with bootstrap intervals).
    Writes report.md / report.html / results.json into ``out_dir`` (default <run dir>/eval).
    """
    from lmforge.evaluate.report import write_report

    overrides = list(overrides) + ([f"data.test={data}"] if data else [])
    path = Path(target)
    if path.is_dir():
        session = restore_session(path, overrides, trained=not base, say=say)
    else:  # a config's base model: data.prepare runs in a temporary folder (a trained run's data/ is its record)
        config = load_run_config(path, overrides, say=say)
        session = open_session(config, source=str(path), say=say, train=False, scratch=True)
    from lmforge.atomic import atomic_dir
    from lmforge.outputs import eval_output_dir, write_marker

    out = eval_output_dir(session.config, out_dir, (path if path.is_dir() else session.run_dir), "eval-base" if base else "eval")
    session.model.eval()
    from lmforge.train.threads import apply_thread_policy

    apply_thread_policy(session.config.runtime.threads, phase="eval", say=say)
    with progress.phase("eval"):
        metrics = session.evaluate(per_example=True)
        samples = session.generations()
    report = {"model": session.config.model.name + (" (base)" if base else ""), "method": session.plan.method.name,
              "objective": session.plan.objective.name, "after": metrics,
              "samples": [{"prompt": x["prompt"], "reference": x["reference"], "after": x["output"],
                           "truncated": {"after": x.get("truncated")}} for x in samples]}
    with progress.phase("eval"):
        judge_samples(session, report, ["after"], say)
        if generate and session.plan.generative:
            report["generation"] = generation_scores(session, generate)
            metrics = {**metrics, **{k: v["value"] for k, v in report["generation"].items()}}
    with atomic_dir(out) as stage:  # the report folder appears whole
        write_report(stage, report)
        write_marker(stage, "eval")
    for sample in samples:
        say(f"\nprompt: {elide(sample['prompt'])}\noutput: {elide(sample['output'], tail=0)}")
    for name, v in (report.get("generation") or {}).items():
        say(f"{name:<12} {v['value']:.4f}  [{v['low']:.4f}, {v['high']:.4f}]")
    say(f"report: {out / 'report.html'}")
    return metrics


def format_metrics(metrics: dict) -> str:
    """The lines ``lmforge eval`` prints for :func:`run_eval`'s metrics (lmforge.evaluate.report.format_metrics)."""
    from lmforge.evaluate.report import format_metrics as lines

    return lines(metrics)
