"""`lmforge estimate`: predicted peak memory and time per step for this exact run (+ what fits a budget)."""

from __future__ import annotations

from typing import Callable

from lmforge.config import RunConfig

Say = Callable[[str], None]


def run_estimate(config: RunConfig, *, source: str = "<config>", budget_gb: float | None = None,
                 say: Say = print) -> dict:
    """Print the estimate (and, with ``budget_gb``, changes that fit it); return it as a dict."""
    from lmforge.pipeline.multitask import task_sections
    from lmforge.pipeline.plan import plan_run
    from lmforge.train.estimate import suggest
    from lmforge.train.estimate_run import estimate_run

    run = estimate_run(config, plan_run(config, source), task_sections=task_sections(config.data) or None)  # meta device: no weights loaded
    est, lengths = run.estimate, run.lengths
    say(f"{config.model.name} / {config.method.name} / {run.precision} / batch {config.train.batch_size} x "
        f"accum {config.train.grad_accum} / {run.trainable_params:,} of {run.total_params:,} parameters trained / "
        f"{run.records} examples (sample of {len(lengths)}: median {sorted(lengths)[len(lengths) // 2]} tokens)")
    for note in run.notes:
        say(f"  sample: {note}")
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
