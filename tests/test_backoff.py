"""``rotator.backoff``: jittered capped backoff, and a worker slot lent out while waiting."""

from __future__ import annotations

import asyncio
import itertools
import random

from rotator.backoff import delays, holding, pause


def test_delays_double_up_to_the_cap_each_jittered_within_its_upper_half() -> None:
    waits = list(itertools.islice(delays(1.0, 8.0, random.Random(7)), 7))
    caps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for wait, cap in zip(waits, caps, strict=True):
        assert cap / 2 <= wait <= cap
    assert len(set(waits)) == len(waits), "jittered, not a fixed ladder"


def test_workers_that_failed_together_do_not_retry_together() -> None:
    first = [next(delays(4.0, 4.0, random.Random(seed))) for seed in range(20)]
    assert max(first) - min(first) > 1.0


async def test_a_task_waiting_gives_its_worker_slot_to_another() -> None:
    """One slot: A waits (IAM propagating its key) and B does its work meanwhile."""
    slot = asyncio.Semaphore(1)
    order: list[str] = []

    async def a() -> None:
        async with slot:
            with holding(slot):
                order.append("a starts")
                await pause(0.2)
                order.append("a resumes")

    async def b() -> None:
        await asyncio.sleep(0.05)
        async with slot:
            order.append("b works")

    await asyncio.gather(a(), b())
    assert order == ["a starts", "b works", "a resumes"]
    assert not slot.locked(), "every permit is back"


async def test_outside_a_sweep_pause_is_a_plain_sleep() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pause(0.05)
    assert loop.time() - started >= 0.05
