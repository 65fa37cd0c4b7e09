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
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from rotator import audit
from rotator.backoff import delays, pause
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
from rotator.model import LeaseSeen, Outcome, Rotation, RotationState
from rotator.rotation.owners import certainly_dead
from rotator.rotation.protocol import Transition, next_step
from rotator.rotation.steps import StepResult, Steps
from rotator.settings import RetrySettings

# Errors that fail a rotation (retrying cannot help).
FAILING = (Permanent, Refused, SinkError, WrongIdentity)


class Hold:
    """This worker's hold on one rotation's lease while it drives it: renewed in the
    background (a heartbeat every third of the lease period) and checked before every
    side effect (``check``). The hold is valid until ``ttl - margin`` after the last
    successful renewal was *sent*, by this process's monotonic clock, so it ends before
    any taker (who waits a full ``ttl`` on its own clock without seeing a renewal) may
    begin; ``margin`` leaves room for one AWS call already under way."""

    def __init__(self, driver: Driver, rotation: Rotation, sent: float) -> None:
        self._driver = driver
        self.rotation = rotation
        self.valid_until = sent + driver.valid_for
        self.lost: LeaseLost | None = None

    def renewed(self, rotation: Rotation, sent: float) -> None:
        self.rotation = rotation
        self.valid_until = max(self.valid_until, sent + self._driver.valid_for)

    def check(self) -> None:
        """Raise ``LeaseLost`` if this worker may no longer act for the rotation."""
        if self.lost is not None:
            raise self.lost
        if time.monotonic() >= self.valid_until:
            self.lost = LeaseLost(
                self.rotation.rotation_id,
                "this worker's lease ran out before it could renew it (a pause, or the "
                "journal unreachable): it stops, and whoever takes over goes on",
            )
            raise self.lost

    async def beat(self) -> None:
        """Renew the lease every third of its period until cancelled or lost."""
        driver = self._driver
        interval = driver.lease_ttl.total_seconds() / 3
        while self.lost is None:
            await asyncio.sleep(interval)
            sent = time.monotonic()
            try:
                renewed = await driver.journal.renew(
                    self.rotation, driver.lease_ttl, driver.clock()
                )
            except LeaseLost as exc:
                self.lost = exc
                return
            except RotatorError as exc:  # the journal is unreachable: try again
                audit.get_logger().warning(
                    audit.LEASE_RENEW_FAILED, rotation_id=self.rotation.rotation_id, reason=str(exc)
                )
                continue
            self.renewed(renewed, sent)


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
        margin: timedelta = timedelta(0),
    ) -> None:
        self.journal = journal
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.retry = retry
        self.clock = clock
        self.margin = margin

    @property
    def valid_for(self) -> float:
        """Seconds a lease renewal (or acquisition) lets this worker act, from when it was
        sent: the lease period less the margin for a call under way."""
        return (self.lease_ttl - self.margin).total_seconds()

    async def drive(self, rotation: Rotation, steps: Steps) -> tuple[Rotation, list[StepResult]]:
        """Run every step that is due, stopping at the first that does not advance, with
        the lease renewed in the background. Raises ``LeaseLost`` (with the work done so
        far journalled) if another worker took the rotation, or this worker's lease ran
        out; the lease is released in every case."""
        done: list[StepResult] = []
        hold = Hold(self, rotation, time.monotonic())
        heartbeat = asyncio.create_task(hold.beat(), name=f"lease {rotation.rotation_id}")
        try:
            while (due := next_step(rotation)) is not None and due.ready(self.clock()):
                sent = time.monotonic()
                rotation = await self.reacquire(rotation)
                hold.renewed(rotation, sent)
                result = await self.run_step(steps, rotation, due.transition, hold)
                done.append(result)
                rotation = result.rotation
                if not result.advanced:
                    break
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self.release(rotation)  # a no-op if the lease is no longer ours
        return rotation, done

    async def run_step(
        self, steps: Steps, rotation: Rotation, row: Transition, hold: Hold | None = None
    ) -> StepResult:
        """Run the step of protocol row ``row`` (with retries), then audit and journal its
        outcome."""
        started = time.monotonic()
        result = await self._attempt(steps, rotation, row, hold)
        audit.step_event(
            row.step,
            result.outcome,
            rotation=result.rotation,
            credential_id=result.credential_id,
            reason=result.reason,
            duration_ms=int((time.monotonic() - started) * 1000),
            propagation_s=result.propagation_s,
        )
        await self.journal.record_step(result.record(audit.current("run_id")))
        return result

    async def _attempt(
        self, steps: Steps, rotation: Rotation, row: Transition, hold: Hold | None
    ) -> StepResult:
        step = row.step
        guard = hold.check if hold is not None else _unguarded
        waits = delays(
            self.retry.initial_delay.total_seconds(), self.retry.max_delay.total_seconds()
        )
        for attempt in range(1, self.retry.attempts + 1):
            try:
                guard()
                result = await steps.run(rotation, row, guard=guard)
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
                await pause(next(waits))
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
        """The journal's record of ``rotation_id`` with this worker holding its lease: a
        free lease, ours, or one whose owner is certainly dead (a process of this machine
        that exited, ``owners.certainly_dead``). Raises ``LeaseLost`` (with what was seen)
        if another worker holds it, ``NotFound``."""
        try:
            return await self.journal.acquire(rotation_id, self.owner, self.lease_ttl, self.clock())
        except LeaseLost as exc:
            if exc.seen is None or exc.holder is None or not certainly_dead(exc.holder):
                raise
            taken = await self.journal.acquire(
                rotation_id, self.owner, self.lease_ttl, self.clock(), takeover=exc.seen
            )
            audit.get_logger().warning(
                audit.ROTATION_TAKEN_OVER,
                rotation_id=rotation_id,
                holder=exc.holder,
                reason=f"{exc.holder} is a process of this machine that no longer runs",
            )
            return taken

    async def reacquire(self, rotation: Rotation) -> Rotation:
        """The journal's current record with our lease renewed (a failed step may have
        journalled part of its work, so the copy we hold can be stale). Raises
        ``LeaseLost`` if the lease we held is gone — even if it is free again: another
        worker may have taken the rotation over, moved it on and let go meanwhile, and a
        worker that lost its lease never picks the rotation up again where it left it."""
        held = rotation.lease
        renewed = await self.journal.acquire(
            rotation.rotation_id, self.owner, self.lease_ttl, self.clock()
        )
        if held is not None and (renewed.lease is None or renewed.lease.fence != held.fence):
            await self.release(renewed)
            raise LeaseLost(
                rotation.rotation_id,
                f"this worker's lease (fence {held.fence}) was taken over and let go meanwhile",
            )
        return renewed

    async def take_over(
        self, rotation_id: str, patience: timedelta, *, while_silent: bool = False
    ) -> Rotation:
        """Acquire a rotation's lease, waiting up to ``patience``: for its holder to let go
        (a daemon finishing its step), or — the DynamoDB Lock Client's way, immune to clock
        skew — for a full lease period on this process's monotonic clock without the
        record moving, after which the silent holder's lease is taken over. With
        ``while_silent`` the wait ends as soon as the holder shows a sign of life (it is
        alive: not ours to take). Raises ``LeaseLost`` when the wait ends."""
        deadline = time.monotonic() + patience.total_seconds()
        poll = min(1.0, self.lease_ttl.total_seconds() / 10)
        watching: tuple[LeaseSeen, float] | None = None
        while True:
            try:
                return await self.take(rotation_id)
            except LeaseLost as exc:
                now = time.monotonic()
                if exc.seen is None:
                    raise
                if watching is None or watching[0] != exc.seen:
                    if watching is not None and while_silent:
                        raise  # renewed or written since: a live worker has it
                    if watching is None:
                        audit.get_logger().info(
                            audit.ROTATION_WAITING,
                            rotation_id=rotation_id,
                            holder=exc.holder,
                            until=exc.until,
                            patience_s=patience.total_seconds(),
                            reason=f"waiting up to {patience} for another worker: {exc}",
                        )
                    watching = (exc.seen, now)
                elif now - watching[1] >= self.lease_ttl.total_seconds():
                    with contextlib.suppress(LeaseLost):  # it moved just now: watch again
                        taken = await self.journal.acquire(
                            rotation_id,
                            self.owner,
                            self.lease_ttl,
                            self.clock(),
                            takeover=exc.seen,
                        )
                        audit.get_logger().warning(
                            audit.ROTATION_TAKEN_OVER,
                            rotation_id=rotation_id,
                            holder=exc.holder,
                            reason=f"no sign of life from {exc.holder} for a full lease "
                            f"period ({self.lease_ttl}) on this worker's clock",
                        )
                        return taken
                if now >= deadline:
                    raise
            await asyncio.sleep(poll)

    async def release(self, rotation: Rotation) -> None:
        """Give the lease back; if that fails it simply expires."""
        try:
            await self.journal.release(rotation)
        except RotatorError as exc:
            audit.get_logger().warning(
                audit.LEASE_RELEASE_FAILED, rotation_id=rotation.rotation_id, reason=str(exc)
            )


def _unguarded() -> None:
    """No lease to check (a step run outside ``Driver.drive``, e.g. in a test)."""


__all__ = ["FAILING", "Driver", "Hold", "LeaseLost"]
