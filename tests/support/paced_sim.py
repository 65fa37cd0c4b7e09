"""A sweep's IAM calls through a ``Pacer`` against IAM's token bucket, on a fake clock.

Deterministic (a seeded ``random.Random`` and virtual time): ``workers`` tasks each rotate
users one after another, ``calls`` IAM calls per user with a pause (the verification) after
the second. A call waits for its turn (``Pacer.acquire``), reaches IAM ``latency`` seconds
later and takes a token from a bucket of ``quota`` per second (burst: one second's worth):
with none left it is answered ``Throttling`` at once, else answered after IAM's processing
time. A throttled call is retried as botocore's ``standard`` mode does (a random backoff of
up to 2^attempt seconds, 8 attempts in all). Time moves only when every task waits, to the
earliest wake-up: the simulated minute takes a fraction of a second.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from dataclasses import dataclass

from rotator.pacing import Pacer
from tests.support.faults import TokenBucket


class VirtualTime:
    """A clock and a sleep for ``Pacer`` (and the simulated tasks): ``sleep`` parks the
    caller until ``advance`` reaches its wake-up time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(seconds, 0.0), next(self._order), wake))
        await wake

    def waiting(self) -> int:
        return len(self._timers)

    def advance(self) -> None:
        """Move to the earliest wake-up and wake that sleeper."""
        self.now, _, wake = heapq.heappop(self._timers)
        wake.set_result(None)


@dataclass
class Outcome:
    """What the simulated sweep got: answered (useful) calls, throttled answers, users
    whose rotation failed (a call throttled 8 times), and the virtual seconds it took."""

    answered: int = 0
    throttled: int = 0
    failed: int = 0
    seconds: float = 0.0

    def share_of(self, quota: float) -> float:
        """Useful calls per second over the whole sweep, as a share of ``quota``."""
        return self.answered / self.seconds / quota


async def sweep(
    quota: float,
    *,
    ceiling: float | None = None,
    users: int = 200,
    workers: int = 32,
    calls: int = 6,
    latency: float = 0.02,
    processing: float = 0.015,
    verify_s: float = 1.0,
    seed: int = 1,
) -> tuple[Outcome, Pacer]:
    """Rotate ``users`` through one ``Pacer`` (``ceiling``) against a bucket of ``quota``."""
    time = VirtualTime()
    rng = random.Random(seed)
    pacer = Pacer(ceiling, clock=time.clock, sleep=time.sleep)
    bucket = TokenBucket(quota, quota, clock=lambda: time.now)
    outcome = Outcome()
    queue = list(range(users))
    running = workers

    async def call() -> bool:
        for attempt in range(1, 9):
            await pacer.acquire()
            await time.sleep(latency)
            if bucket.take():
                await time.sleep(processing * rng.uniform(0.5, 1.5))
                pacer.on_answer(throttled=False)
                outcome.answered += 1
                return True
            pacer.on_answer(throttled=True)
            outcome.throttled += 1
            await time.sleep(rng.random() * min(2 ** (attempt - 1), 20))
        return False

    async def worker() -> None:
        nonlocal running
        while queue:
            queue.pop()
            for n in range(calls):
                if not await call():
                    outcome.failed += 1
                    break
                await time.sleep(0.005)  # the rotation's own work between calls
                if n == 1:
                    await time.sleep(verify_s)
        running -= 1

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    while running:
        await asyncio.sleep(0)  # let the tasks run...
        if 0 < running <= time.waiting():  # ...until every one of them waits
            time.advance()
    await asyncio.gather(*tasks)
    outcome.seconds = time.now
    return outcome, pacer
