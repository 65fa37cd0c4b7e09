"""Driving one rotation: run its due steps under its journal lease.

Before each step the lease is renewed; a transient error is retried with capped
exponential backoff (steps are idempotent, and each retry starts from the journal's current
record); a permanent error fails the rotation; every outcome is journalled and audited. A
lost lease stops the work at once: another worker owns the rotation now.

The protocol table is authoritative: each step runs as its row of ``protocol.TABLE``, and a
step that leaves the rotation in a state its row does not allow fails the rotation
(``ProtocolViolation``) instead of being believed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from rotator import audit
from rotator.errors import (
    LeaseLost,
    Permanent,
    ProtocolViolation,
    Refused,
    RotatorError,
    SinkError,
    Transient,
    WrongIdentity,
)
from rotator.journal.base import Journal
from rotator.model import Outcome, Rotation, RotationState
from rotator.rotation.protocol import Transition, next_step
from rotator.rotation.steps import StepResult, Steps
from rotator.settings import RetrySettings

# Errors that fail a rotation (retrying cannot help).
FAILING = (Permanent, Refused, SinkError, WrongIdentity)


class Driver:
    """Runs rotations' steps for one worker (``owner``)."""

    def __init__(
        self,
        *,
        journal: Journal,
        owner: str,
        lease_ttl: timedelta,
        retry: RetrySettings,
        clock: Callable[[], datetime],
    ) -> None:
        self.journal = journal
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.retry = retry
        self.clock = clock

    async def drive(self, rotation: Rotation, steps: Steps) -> tuple[Rotation, list[StepResult]]:
        """Run every step that is due, stopping at the first that does not advance.
        Raises ``LeaseLost`` (with the work done so far journalled) if another worker took
        the rotation; the lease is released in every case."""
        done: list[StepResult] = []
        try:
            while (due := next_step(rotation)) is not None and due.ready(self.clock()):
                rotation = await self.reacquire(rotation)
                result = await self.run_step(steps, rotation, due.transition)
                done.append(result)
                rotation = result.rotation
                if not result.advanced:
                    break
        finally:
            await self.release(rotation)
        return rotation, done

    async def run_step(self, steps: Steps, rotation: Rotation, row: Transition) -> StepResult:
        """Run the step of protocol row ``row`` (with retries), then audit and journal its
        outcome."""
        started = time.monotonic()
        result = await self._attempt(steps, rotation, row)
        audit.step_event(
            row.step,
            result.outcome,
            rotation=result.rotation,
            credential_id=result.credential_id,
            reason=result.reason,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        await self.journal.record_step(result.record(audit.current("run_id")))
        return result

    async def _attempt(self, steps: Steps, rotation: Rotation, row: Transition) -> StepResult:
        step = row.step
        delay = self.retry.initial_delay.total_seconds()
        for attempt in range(1, self.retry.attempts + 1):
            try:
                result = await steps.run(rotation, row)
                if not row.allows(result.rotation.state):
                    raise ProtocolViolation(rotation.rotation_id, row.name, result.rotation.state)
                return result
            except Transient as exc:
                rotation = await self.reacquire(rotation)
                if attempt == self.retry.attempts:
                    reason = f"{exc} (after {attempt} attempts; retried next sweep)"
                    return StepResult(
                        rotation=rotation, step=step, outcome=Outcome.RETRY, reason=reason
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry.max_delay.total_seconds())
            except FAILING as exc:
                rotation = await self.reacquire(rotation)
                now = self.clock()
                failed = await self.journal.save(
                    rotation.evolve(
                        state=RotationState.FAILED, reason=str(exc), finished_at=now, updated_at=now
                    )
                )
                return StepResult(
                    rotation=failed, step=step, outcome=Outcome.FAILED, reason=str(exc)
                )
        raise ValueError(f"retry.attempts must be at least 1, not {self.retry.attempts}")

    async def take(self, rotation_id: str) -> Rotation:
        """The journal's record of ``rotation_id`` with this worker holding its lease.
        Raises ``LeaseLost`` (another worker holds it) or ``NotFound``."""
        return await self.journal.acquire(rotation_id, self.owner, self.lease_ttl, self.clock())

    async def reacquire(self, rotation: Rotation) -> Rotation:
        """The journal's current record with our lease renewed (a failed step may have
        journalled part of its work, so the copy we hold can be stale)."""
        return await self.journal.acquire(
            rotation.rotation_id, self.owner, self.lease_ttl, self.clock()
        )

    async def take_over(self, rotation_id: str, patience: timedelta) -> Rotation:
        """Acquire a rotation's lease, waiting up to ``patience`` for a live worker (a
        daemon's sweep) to finish its step and let go. Raises ``LeaseLost`` after that."""
        deadline = time.monotonic() + patience.total_seconds()
        waiting = False
        while True:
            try:
                return await self.journal.acquire(
                    rotation_id, self.owner, self.lease_ttl, self.clock()
                )
            except LeaseLost as exc:
                if time.monotonic() >= deadline:
                    raise
                if not waiting:
                    waiting = True
                    audit.get_logger().info(
                        audit.ROTATION_WAITING,
                        rotation_id=rotation_id,
                        patience_s=patience.total_seconds(),
                        reason=f"waiting up to {patience} for another worker: {exc}",
                    )
            await asyncio.sleep(0.2)

    async def release(self, rotation: Rotation) -> None:
        """Give the lease back; if that fails it simply expires."""
        try:
            await self.journal.release(rotation)
        except RotatorError as exc:
            audit.get_logger().warning(
                audit.LEASE_RELEASE_FAILED, rotation_id=rotation.rotation_id, reason=str(exc)
            )


__all__ = ["FAILING", "Driver", "LeaseLost"]
