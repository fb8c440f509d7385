"""`lmforge estimate`: predicted peak memory and time per step for this exact run (+ what fits a budget)."""

from __future__ import annotations

from typing import Callable

from lmforge.config import RunConfig
from lmforge.pipeline.session import open_session

Say = Callable[[str], None]


def run_estimate(config: RunConfig, *, source: str = "<config>", budget_gb: float | None = None,
                 say: Say = print) -> dict:
    """Print the estimate (and, with ``budget_gb``, changes that fit it); return it as a dict."""
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
