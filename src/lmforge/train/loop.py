"""The one training loop.

batch -> ``objective.loss`` -> backward (token-weighted over the accumulation window) -> clip,
step, schedule -> log / evaluate / checkpoint through callbacks. No method, device or precision
branches here: those live in the method, the objective and :class:`~lmforge.train.runtime.Runtime`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from lmforge.config.schema import RuntimeConfig, TrainConfig
from lmforge.errors import UserError
from lmforge.train.callbacks import Callback, StepTimer, default_callbacks
from lmforge.train.checkpoint import (BEST, LAST, checkpoint_dir, find_resume_dir, load_checkpoint,
                                      remove_stale_temporaries, save_checkpoint)
from lmforge.train.optim import build_optimizer, build_scheduler
from lmforge.train.runtime import Runtime, build_runtime
from lmforge.train.state import LoopState, StepPlan, TrainResult, improved, next_window, plan_steps


def train(
    model: nn.Module,
    objective: Any,
    train_features: Sequence[dict],
    *,
    train_cfg: TrainConfig,
    runtime_cfg: RuntimeConfig | None = None,
    run_dir: str | Path,
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
    evaluate_fn: Callable[[nn.Module], dict[str, float]] | None,
    seed: int,
    best_metric: str,
    metric_mode: str,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
) -> TrainResult:
    """Train ``model`` (its ``requires_grad`` params) on ``train_features``; return the result.

    ``runtime_cfg``: device, precision, threads, compile, memory levers, distribution (default: automatic).
    Every optimizer step consumes ``train_cfg.grad_accum`` micro-batches of ``batch_size``
    features (``collate(features) -> batch``) and minimises sum(loss totals) / sum(counts) over
    the window. ``evaluate_fn(model) -> {metric: value}`` runs every ``eval_every`` steps (default
    each epoch) and at the end; the best ``best_metric`` (``metric_mode`` "min"/"max") is kept in
    ``<run_dir>/checkpoints/best``, and ``checkpoints/last`` every ``save_every`` steps and at the
    end. ``resume=True`` continues from ``checkpoints/last`` to the same final weights as an
    uninterrupted run. ``callbacks`` are added to the progress bar / metrics.jsonl / TensorBoard.

    ``train_features`` is any sequence (``len`` + ``[i]``), e.g. memory-mapped
    :class:`lmforge.data.shards.TokenShards`. While training, frozen weights are stored in
    ``runtime.memory.base_dtype`` (restored after; see :meth:`Runtime.finish`). Under a launcher (``WORLD_SIZE`` > 1) every process
    calls ``train`` alike: the global window (``batch_size x grad_accum`` examples) is split over
    processes with the same math as one process; rank 0 writes checkpoints and metrics.
    """
    runtime = build_runtime(runtime_cfg or RuntimeConfig(), seed)
    wrapped = runtime.prepare(model)
    plan = plan_steps(len(train_features), train_cfg)
    optimizer = build_optimizer(model, train_cfg)
    scheduler = build_scheduler(optimizer, train_cfg, plan.total_steps)
    state = _start_state(run_dir, resume, model, optimizer, scheduler, clean=runtime.is_main)
    hooks = runtime.callbacks(default_callbacks(run_dir, train_cfg.tensorboard), callbacks or [])
    _emit(hooks, "on_begin", plan, state)
    pending = _LogWindow()
    model.train()
    while state.step < plan.total_steps and not state.stopped_early:
        window = next_window(plan, state, train_cfg.batch_size, train_cfg.grad_accum, seed)
        batches = [(runtime.to_device(collate([train_features[i] for i in idx])), weight)
                   for idx, weight in runtime.shard(window)]
        with StepTimer() as timer:
            logs = _optimizer_step(wrapped, objective, batches, optimizer, scheduler, runtime, train_cfg)
        state.step += 1
        logs["seconds"] = timer.seconds
        pending.add(logs)
        _emit(hooks, "on_step", state, logs)
        done = state.step >= plan.total_steps
        if state.step % plan.log_every == 0 or done:
            _emit(hooks, "on_log", pending.flush(state, plan))
        if evaluate_fn is not None and (state.step % plan.eval_every == 0 or done):
            _evaluate(model, evaluate_fn, state, hooks, run_dir, best_metric, metric_mode, train_cfg, runtime)
        if state.step % plan.save_every == 0 or done or state.stopped_early:
            save_checkpoint(checkpoint_dir(run_dir, LAST), model, state, optimizer, scheduler, write=runtime.is_main)
            runtime.wait()  # no rank runs ahead of a half-written checkpoint
    rounded = runtime.finish(model)
    _emit(hooks, "on_end", state)
    return TrainResult(state.step, state.best_step, state.best_metrics, state.history, state.stopped_early, rounded)


def _optimizer_step(model, objective, batches, optimizer, scheduler, runtime: Runtime, train_cfg: TrainConfig) -> dict:
    """One accumulation window: token-weighted backward, clip, step, schedule, zero_grad.

    ``batches``: this process's ``(batch, weight)`` per micro-batch (weight 0.0 = placeholder
    that only keeps the processes in step). Units, loss and tokens are summed over processes.
    """
    (total,) = runtime.global_sum([sum(objective.count(b) * w for b, w in batches)])  # WHOLE window
    scale = runtime.grad_scale()  # 1.0 for one process; undoes DDP/FSDP's averaging otherwise
    loss_sum = 0.0
    for i, (batch, weight) in enumerate(batches):
        with runtime.sync(model, last=i == len(batches) - 1):
            with runtime.autocast():
                out = objective.loss(model, batch)
            if total > 0:  # global: every process takes the same branch
                (out.total * (weight * scale) / total).backward()
        loss_sum += float(out.total.detach()) * weight
    params = [p for group in optimizer.param_groups for p in group["params"]]
    max_norm = train_cfg.max_grad_norm or float("inf")  # inf: measure only (clip factor 1.0)
    grad_norm = runtime.clip_grad_norm(params, max_norm)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    tokens = sum(weight * (int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel())
                 for b, weight in batches)
    loss_sum, tokens = runtime.global_sum([loss_sum, tokens])
    total = int(total)
    return {"loss_sum": loss_sum, "units": total, "lr": lr, "grad_norm": grad_norm, "tokens": int(tokens),
            "loss": loss_sum / max(total, 1)}


def _evaluate(model, evaluate_fn, state: LoopState, hooks, run_dir, best_metric, metric_mode, train_cfg,
              runtime: Runtime) -> None:
    """Run ``evaluate_fn``; update history, the best checkpoint and early stopping in ``state``."""
    metrics = {k: v for k, v in runtime.evaluate(evaluate_fn, model).items() if isinstance(v, (int, float, str, bool))}
    model.train()
    if best_metric not in metrics:
        raise UserError(
            f"evaluation reported no '{best_metric}'", where="eval.metric", hint=f"reported: {', '.join(sorted(metrics))}"
        )
    record = {"step": state.step, "event": "eval", **metrics}
    state.history.append(record)
    _emit(hooks, "on_log", record)
    value = float(metrics[best_metric])
    if improved(value, state.best_value, metric_mode):
        state.best_value, state.best_step, state.best_metrics = value, state.step, dict(metrics)
        save_checkpoint(checkpoint_dir(run_dir, BEST), model, state, write=runtime.is_main)
        runtime.wait()
    stopping = train_cfg.early_stopping
    if stopping is None:
        return
    name = stopping.metric or best_metric
    if name not in metrics:
        raise UserError(f"evaluation reported no '{name}'", where="train.early_stopping.metric",
                        hint=f"reported: {', '.join(sorted(metrics))}")
    mode = metric_mode if name == best_metric else ("min" if "loss" in name or "perplexity" in name else "max")
    if improved(float(metrics[name]), state.stop_best, mode, stopping.min_delta):
        state.stop_best, state.bad_evals = float(metrics[name]), 0
    else:
        state.bad_evals += 1
        state.stopped_early = state.bad_evals >= stopping.patience


def _start_state(run_dir, resume: bool, model, optimizer, scheduler, clean: bool = True) -> LoopState:
    """Fresh state, or the state restored (with weights, optimizer, scheduler, RNG) from last.

    ``clean`` (the main process): a resume first removes what a killed checkpoint write left behind.
    """
    if not resume:
        return LoopState()
    if clean:
        for path in remove_stale_temporaries(run_dir):
            print(f"resume: removed {path} (left by an interrupted checkpoint write)")
    folder = find_resume_dir(run_dir)
    if folder is None:
        print(f"resume: no checkpoint in {Path(run_dir) / 'checkpoints'}; starting fresh")
        return LoopState()
    state = load_checkpoint(folder, model, optimizer, scheduler)
    print(f"resume: continuing from {folder} at step {state.step}")
    return state


class _LogWindow:
    """Token-weighted mean loss and throughput over the steps since the last log event."""

    def __init__(self) -> None:
        self.loss_sum, self.units, self.tokens, self.seconds, self.last = 0.0, 0, 0, 0.0, {}

    def add(self, logs: dict) -> None:
        self.loss_sum += logs["loss_sum"]
        self.units += logs["units"]
        self.tokens += logs["tokens"]
        self.seconds += logs["seconds"]
        self.last = logs

    def flush(self, state: LoopState, plan: StepPlan) -> dict:
        record = {
            "step": state.step, "event": "train", "epoch": round(state.step / plan.steps_per_epoch, 4),
            "loss": self.loss_sum / max(self.units, 1), "lr": self.last["lr"], "grad_norm": self.last["grad_norm"],
            "tokens_per_s": self.tokens / self.seconds if self.seconds > 0 else 0.0,
        }
        self.__init__()
        return record


def _emit(hooks: list[Callback], event: str, *args: Any) -> None:
    for hook in hooks:
        getattr(hook, event)(*args)
