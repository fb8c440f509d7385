"""Loop callbacks: progress bar, metrics.jsonl, TensorBoard, run status. The loop only calls these hooks.

Hooks (all optional no-ops on :class:`Callback`):
  on_begin(plan, state)  once, after any resume (state.step = first step already done)
  on_step(state, logs)   after every optimizer step; logs: loss, lr, grad_norm, units, tokens, seconds
  on_log(record)         each log / eval event: a flat dict with "step" and "event" ("train"/"eval")
  on_end(state)          once, when the loop finishes or stops early (not on exceptions)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lmforge import status
from lmforge.atomic import atomic_write_text
from lmforge.train.state import LoopState, StepPlan


class Callback:
    def on_begin(self, plan: StepPlan, state: LoopState) -> None: ...

    def on_step(self, state: LoopState, logs: dict[str, Any]) -> None: ...

    def on_log(self, record: dict[str, Any]) -> None: ...

    def on_end(self, state: LoopState) -> None: ...


class ProgressBar(Callback):
    """tqdm bar over optimizer steps: loss, lr, tokens/s (real input tokens) and ETA."""

    def on_begin(self, plan: StepPlan, state: LoopState) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=plan.total_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True)
        self.tokens, self.seconds = 0, 0.0

    def on_step(self, state: LoopState, logs: dict[str, Any]) -> None:
        self.tokens += logs["tokens"]
        self.seconds += logs["seconds"]
        rate = self.tokens / self.seconds if self.seconds > 0 else 0.0
        self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", tok_s=f"{rate:.0f}", refresh=False)
        self.bar.update(1)

    def on_end(self, state: LoopState) -> None:
        self.bar.close()


class MetricsWriter(Callback):
    """Appends one JSON object per log/eval event to ``<run>/metrics.jsonl`` (flushed each line).

    On resume, lines from steps after the checkpoint (written by the interrupted run) are dropped
    first, so the file never holds a step twice.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "metrics.jsonl"

    def on_begin(self, plan: StepPlan, state: LoopState) -> None:
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= state.step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a", encoding="utf-8")

    def on_log(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def on_end(self, state: LoopState) -> None:
        self.file.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # unreadable (a torn last line): drop it


class TensorBoardWriter(Callback):
    """Scalars of every log/eval event into ``<run>/tensorboard`` (tag "<event>/<name>")."""

    def __init__(self, run_dir: str | Path):
        self.folder = Path(run_dir) / "tensorboard"

    def on_begin(self, plan: StepPlan, state: LoopState) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=state.step + 1 if state.step else None)

    def on_log(self, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key not in ("step", "event") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{record['event']}/{key}", value, record["step"])
        self.writer.flush()

    def on_end(self, state: LoopState) -> None:
        self.writer.close()


class StatusProgress(Callback):
    """Step k of N (and the ETA) into ``<run>/status.json`` through :mod:`lmforge.status`; a no-op
    unless the pipeline is tracking the run (``status.tracking``)."""

    def on_begin(self, plan: StepPlan, state: LoopState) -> None:
        self.total = plan.total_steps
        status.set_progress(state.step, self.total)

    def on_step(self, state: LoopState, logs: dict[str, Any]) -> None:
        status.set_progress(state.step, self.total)


def default_callbacks(run_dir: str | Path, tensorboard: bool) -> list[Callback]:
    found: list[Callback] = [ProgressBar(), MetricsWriter(run_dir), StatusProgress()]
    if tensorboard:
        found.append(TensorBoardWriter(run_dir))
    return found


class StepTimer:
    """Wall time of one optimizer step (for tokens/s)."""

    def __enter__(self) -> "StepTimer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
