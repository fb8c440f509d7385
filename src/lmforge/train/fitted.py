"""Record a solved model as a one-step run: what the loop would leave behind, without its steps.

A method that solves its parameters directly (``method.fit``: freeze's pooled linear head, fitted by
L-BFGS on frozen features) replaces the training loop. The run folder must still look like a
trained one, so evaluation, export, ``lmforge eval RUN`` and ``--resume`` work unchanged: the fit is
step 1, with a ``train`` event (the fit's summary) and an ``eval`` event in metrics.jsonl, and the
solved weights in ``checkpoints/best`` and ``checkpoints/last``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from lmforge.config.schema import TrainConfig
from lmforge.train.callbacks import MetricsWriter, TensorBoardWriter
from lmforge.train.checkpoint import BEST, LAST, checkpoint_dir, save_checkpoint
from lmforge.train.launch import is_main_process
from lmforge.train.state import LoopState, StepPlan, TrainResult


def record_fit(model: nn.Module, summary: dict[str, Any], *, train_cfg: TrainConfig, run_dir: str | Path,
               evaluate_fn: Callable[[nn.Module], dict] | None, best_metric: str) -> TrainResult:
    """Write the solved ``model`` as step 1 of ``run_dir`` (see the module doc) and return the result.

    summary: the method's fit summary (numbers are logged; ``train_loss`` as the event's ``loss``).
    evaluate_fn: as for :func:`lmforge.train.train` (its metrics become the step-1 eval event).
    """
    main = is_main_process()
    hooks = [MetricsWriter(run_dir)] + ([TensorBoardWriter(run_dir)] if train_cfg.tensorboard else [])
    state = LoopState(step=1)
    plan = StepPlan(examples=int(summary.get("examples", 1)), micro_per_epoch=1, steps_per_epoch=1, total_steps=1,
                    eval_every=1, save_every=1, log_every=1)
    if main:
        for hook in hooks:
            hook.on_begin(plan, LoopState())
    record = {"step": 1, "event": "train", "epoch": 1.0,
              **{k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}
    if "train_loss" in summary:
        record["loss"] = float(summary["train_loss"])
    events = [record]
    metrics: dict[str, Any] = {}
    if evaluate_fn is not None:
        metrics = {k: v for k, v in evaluate_fn(model).items() if isinstance(v, (int, float, str, bool))}
        events.append({"step": 1, "event": "eval", **metrics})
        state.history.append(events[-1])
    state.best_step = 1
    state.best_metrics = dict(metrics)
    state.best_value = float(metrics[best_metric]) if best_metric in metrics else None
    for which in (BEST, LAST):
        save_checkpoint(checkpoint_dir(run_dir, which), model, state, write=main)
    if main:
        for hook in hooks:
            for event in events:
                hook.on_log(event)
            hook.on_end(state)
    return TrainResult(1, 1, state.best_metrics, state.history, False, fit=dict(summary))
