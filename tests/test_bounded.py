"""``rotator.bounded.bounded_map``: every item's result in order, never more than the limit
running (nor alive as tasks) at once, the first error cancelling the rest."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

import pytest

from rotator.bounded import bounded_map


async def test_results_come_back_in_the_items_order_with_at_most_the_limit_running() -> None:
    running = peak = 0

    async def square(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (n % 3))  # finish out of order
        running -= 1
        return n * n

    assert await bounded_map(square, range(50), 4) == [n * n for n in range(50)]
    assert peak == 4
    assert await bounded_map(square, [], 4) == []


async def test_only_the_limit_of_tasks_exist_at_once_however_many_items() -> None:
    """10,000 items, limit 8: the tasks alive stay near 8 (plus the workers), not 10,000."""
    alive: list[int] = []

    async def look(_: int) -> None:
        alive.append(len(asyncio.all_tasks()))
        await asyncio.sleep(0)

    await bounded_map(look, range(10_000), 8)
    assert max(alive) <= 1 + 2 * 8  # the caller, the workers and their calls


async def test_the_first_error_is_raised_and_cancels_the_calls_still_running() -> None:
    cancelled: list[int] = []
    started: list[int] = []

    async def work(n: int) -> int:
        started.append(n)
        if n == 3:
            raise ValueError("item 3 is bad")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    with pytest.raises(ValueError, match="item 3 is bad"):
        await asyncio.wait_for(bounded_map(work, range(100), 5), 5)
    assert sorted(cancelled) == [0, 1, 2, 4]
    assert len(started) == 5, "no item started after the error"


async def test_each_call_has_its_own_copy_of_the_context_variables() -> None:
    """As under ``asyncio.gather``: what one call binds (the audit's user) is not seen by
    the next call that the same worker runs."""
    user: ContextVar[str] = ContextVar("user", default="")

    async def bind(name: str) -> str:
        seen = user.get()
        user.set(name)
        await asyncio.sleep(0)
        return seen

    assert await bounded_map(bind, ["a", "b", "c", "d"], 1) == ["", "", "", ""]
