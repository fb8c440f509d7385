"""Admission: a bounded number run, a bounded queue waits first-come-first-served, and a full queue is 503."""

from __future__ import annotations

import asyncio
import time

import pytest

from lmforge.serve.admission import Admission
from lmforge.serve.apierror import APIError


def far() -> float:
    return time.monotonic() + 30


def test_waiters_get_turns_in_arrival_order():
    async def main():
        adm, order = Admission(running=1, waiting=10), []

        async def request(i: int):
            async with adm.turn(far()):
                order.append(i)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(request(i) for i in range(6)))
        return adm, order

    adm, order = asyncio.run(main())
    assert order == list(range(6))
    assert adm.used == 0 and adm.waiting() == 0


def test_full_queue_is_503_with_retry_after_and_nothing_is_left_held():
    async def main():
        adm = Admission(running=2, waiting=3)
        tickets = [await adm.enter(far()) for _ in range(2)]
        waiters = [asyncio.create_task(adm.enter(far())) for _ in range(3)]
        await asyncio.sleep(0)
        with pytest.raises(APIError) as err:
            await adm.enter(far())
        for t in tickets:
            t.release()
            t.release()  # idempotent: a stream's cleanup may run twice
        got = [await w for w in waiters[:2]]
        assert not waiters[2].done()
        for t in got:
            t.release()
        (await waiters[2]).release()
        return adm, err.value

    adm, err = asyncio.run(main())
    assert err.status == 503 and err.code == "server_busy" and int(err.headers["Retry-After"]) >= 1
    assert adm.used == 0 and adm.waiting() == 0


def test_waiting_past_the_deadline_is_504_and_leaves_the_queue():
    async def main():
        adm = Admission(running=1, waiting=5)
        held = await adm.enter(far())
        with pytest.raises(APIError) as err:
            await adm.enter(time.monotonic() + 0.05)
        assert adm.waiting() == 0
        held.release()
        return adm, err.value

    adm, err = asyncio.run(main())
    assert err.status == 504 and adm.used == 0


def test_a_cancelled_waiter_gives_its_turn_to_the_next():
    async def main():
        adm = Admission(running=1, waiting=5)
        held = await adm.enter(far())
        gone = asyncio.create_task(adm.enter(far()))
        nxt = asyncio.create_task(adm.enter(far()))
        await asyncio.sleep(0)
        held.release()  # the turn is handed to `gone` ...
        gone.cancel()  # ... whose client leaves before it runs: the turn must reach `nxt`
        ticket = await asyncio.wait_for(nxt, 5)
        assert gone.cancelled() and adm.used == 1
        ticket.release()
        return adm

    adm = asyncio.run(main())
    assert adm.used == 0 and adm.waiting() == 0
