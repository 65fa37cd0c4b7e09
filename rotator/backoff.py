"""Waiting between attempts, one way everywhere (the driver's step retries, the kinds'
verification, the credential report's polling).

* ``delays`` — capped exponential backoff with jitter ("equal jitter" of AWS's
  *Exponential Backoff And Jitter*): each wait is half the current cap plus a random share
  of the other half, so that workers that failed together do not retry together, and no
  wait collapses to nothing (IAM's propagation needs real time).
* ``pause`` — sleeps, giving the calling task's worker slot (``max_concurrency``) back
  meanwhile: a rotation waiting for IAM to propagate a new key must not keep the others
  from proceeding. The sweep marks the slot a task holds with ``holding``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SLOT: ContextVar[tuple[asyncio.Semaphore, ...]] = ContextVar("rotator_worker_slot", default=())


def delays(initial: float, maximum: float, rng: random.Random | None = None) -> Iterator[float]:
    """Seconds to wait before each retry: ``initial``, then doubling up to ``maximum``,
    each jittered within [cap/2, cap]. Endless: the caller counts its attempts."""
    draw = rng or random.Random()
    cap = max(0.0, initial)
    while True:
        yield cap / 2 + draw.uniform(0, cap / 2)
        cap = min(cap * 2, maximum)


@contextmanager
def holding(*slots: asyncio.Semaphore) -> Iterator[None]:
    """Within the block, this task holds one permit of each of ``slots`` (acquired in this
    order: the account's limit, then an organization sweep's global one); ``pause`` lends
    them all."""
    token = _SLOT.set(slots)
    try:
        yield
    finally:
        _SLOT.reset(token)


async def pause(seconds: float) -> None:
    """Sleep ``seconds``; the task's worker slot, if it holds one, is free meanwhile."""
    slots = _SLOT.get()
    if not slots or seconds <= 0:
        await asyncio.sleep(seconds)
        return
    for slot in reversed(slots):
        slot.release()
    try:
        await asyncio.sleep(seconds)
    finally:
        for slot in slots:  # the order they were first taken in: no deadlock
            await slot.acquire()
