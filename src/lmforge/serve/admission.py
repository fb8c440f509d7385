"""Admission of requests: a bounded number run at once, a bounded queue waits its turn.

At most ``running`` requests hold a turn (are tokenized into the engine or encoded); up to
``waiting`` more wait for one, first come first served. Only when that queue is full is a
request refused: 503 ``server_busy`` with a ``Retry-After`` header estimated from how long
recent requests held their turn. A request still waiting at its deadline gets 504; one whose
client went away leaves the queue. Used from the event loop only, so it needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque

from lmforge.serve.apierror import APIError


class Ticket:
    """A turn held by one request; ``release()`` hands it on (idempotent, safe from any cleanup path)."""

    def __init__(self, admission: Admission):
        self.admission, self.started, self.released = admission, time.monotonic(), False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission._leave(time.monotonic() - self.started)


class Admission:
    """``enter(deadline)`` -> Ticket; ``turn(deadline)`` is the same as an async context manager."""

    def __init__(self, running: int, waiting: int):
        self.limit, self.max_waiting = running, waiting
        self.used = 0
        self.waiters: deque[asyncio.Future] = deque()
        self.hold_s = 1.0  # moving average of how long a request holds its turn (seconds)

    def waiting(self) -> int:
        return len(self.waiters)

    def retry_after(self) -> int:
        """Seconds until a queued request would likely get its turn (at least 1)."""
        return max(1, min(600, math.ceil(self.hold_s * (len(self.waiters) + 1) / self.limit)))

    async def enter(self, deadline: float) -> Ticket:
        """Wait for a turn until ``deadline`` (time.monotonic()); APIError 503 when the queue is full, 504 past it."""
        if self.used < self.limit and not self.waiters:
            self.used += 1
            return Ticket(self)
        if len(self.waiters) >= self.max_waiting:
            raise APIError(503, f"server busy: {self.used} requests running and {len(self.waiters)} waiting; "
                           "retry later", "server_busy", headers={"Retry-After": str(self.retry_after())})
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        self.waiters.append(turn)
        # A timer, not asyncio.wait_for: on 3.11 wait_for swallows a cancellation that arrives just
        # after the turn was handed over, and the handed turn would then never be given back.
        timer = loop.call_later(max(0.0, deadline - time.monotonic()), _expire, turn)
        try:
            await turn
        except BaseException as exc:  # timed out, or the request was cancelled (client gone)
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._leave(None)  # a turn was handed to us just now: pass it on
            else:
                turn.cancel()
                with contextlib.suppress(ValueError):
                    self.waiters.remove(turn)
            if isinstance(exc, _Expired):
                raise APIError(504, "request timed out waiting for its turn", "timeout") from None
            raise
        finally:
            timer.cancel()
        return Ticket(self)

    @contextlib.asynccontextmanager
    async def turn(self, deadline: float):
        ticket = await self.enter(deadline)
        try:
            yield ticket
        finally:
            ticket.release()

    def _leave(self, held_s: float | None) -> None:
        if held_s is not None:
            self.hold_s = 0.8 * self.hold_s + 0.2 * held_s
        while self.waiters:
            turn = self.waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the turn goes straight to the next waiter; `used` is unchanged
                return
        self.used -= 1


class _Expired(Exception):
    """Set on a waiter's future when its deadline passes."""


def _expire(turn: asyncio.Future) -> None:
    if not turn.done():
        turn.set_exception(_Expired())
