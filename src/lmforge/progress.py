"""Progress of a run's phases other than the training steps: evaluation, sample answers, export, parity.

The training loop has its own bar (:class:`lmforge.train.callbacks.ProgressBar`). Everything else a run
does (the base model's held-out loss before training, validation during it, the answers before -> after,
the parity check of an export, the drift baseline) used to run silently: seconds on a fast machine,
minutes on a slow one (3 minutes between "threads: ..." and "before: ..." on a 2-core AVX2 EPYC), with
nothing saying that the run is alive or how long is left.

The pipeline names the phase (``with progress.phase("before"):``); the code doing the work reports
what it finished (``with progress.bar(32, "examples", "evaluation") as tick: ... tick(8)``). A bar
is shown (tqdm on stderr, with rate and ETA, like the training bar) only inside a named phase, so the
same functions stay quiet when a library user or a test calls them. The phase's progress also goes
to ``<run>/status.json`` through :func:`lmforge.status.set_work` (for ``lmforge ui``). Torch-free.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

from lmforge import status

_PHASE: contextvars.ContextVar[str | None] = contextvars.ContextVar("lmforge_progress_phase", default=None)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Show the bars of the work done inside the block, labelled ``name`` (e.g. ``before``)."""
    token = _PHASE.set(name)
    try:
        yield
    finally:
        _PHASE.reset(token)


@contextlib.contextmanager
def within(name: str) -> Iterator[None]:
    """A part of the current phase (``compare`` -> ``compare: fine-tuned``); nothing outside a phase."""
    outer = _PHASE.get()
    if outer is None:
        yield
        return
    with phase(f"{outer}: {name}"):
        yield


def current() -> str | None:
    """The phase named by the innermost :func:`phase` block, None outside one."""
    return _PHASE.get()


@contextlib.contextmanager
def bar(total: int, unit: str, what: str) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` ``unit`` (e.g. 32 "examples") of ``what`` (e.g. "evaluation"); yields
    ``tick(n)``, to call as each ``n`` units finish. Outside a :func:`phase` block ``tick`` does nothing."""
    label = _PHASE.get()
    if label is None or total <= 0:
        yield _nothing
        return
    from tqdm.auto import tqdm

    shown = tqdm(total=total, desc=f"{label}: {what}", unit=f" {unit}", dynamic_ncols=True, leave=False)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        shown.update(n)
        status.set_work(what, done, total, unit)

    status.set_work(what, 0, total, unit)
    try:
        yield tick
    finally:
        shown.close()
        status.set_work(None)


def _nothing(_n: int) -> None:
    return None
