"""The in-memory journal: a real implementation kept in dicts (tests, dry runs, one process).

It applies the same rules as every journal (``rotator.journal.rules``) under an
``asyncio.Lock``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Self

from rotator.errors import Conflict, CorruptRecord, JournalError, NotFound
from rotator.journal.base import (
    TargetState,
    decode_rows,
    rotation_from_record,
    rotation_to_record,
    step_from_record,
    step_to_record,
)
from rotator.journal.rules import (
    Record,
    acquired,
    added,
    describe_target,
    is_finished,
    released,
    renewed,
    saved,
    target_of,
    target_state,
)
from rotator.model import Kind, LeaseSeen, Rotation, StepRecord, new_id


class MemoryJournal:
    """A real journal kept in dicts: for tests, dry runs and single-process use."""

    def __init__(self) -> None:
        self._rotations: dict[str, Record] = {}  # insertion order is add order
        self._steps: dict[str, list[Record]] = {}
        self._lock = asyncio.Lock()
        self._quarantined: list[CorruptRecord] = []
        self._epoch = new_id("journal")

    @property
    def epoch(self) -> str:
        """Random for each instance (its records live as long as it does)."""
        return self._epoch

    async def __aenter__(self) -> Self:
        """Nothing to open: the records live as long as this object."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Nothing to close; the records are kept for a later ``async with``."""

    async def add(self, rotation: Rotation, *, expect_fence: int | None = None) -> Rotation:
        """Insert a new rotation at version 1, fenced above its target's earlier ones.
        Raises ``Conflict`` for a busy target or one that moved since ``expect_fence``."""
        async with self._lock:
            if rotation.rotation_id in self._rotations:
                raise JournalError(f"rotation {rotation.rotation_id} already exists")
            probe = rotation_to_record(rotation)
            self._check_target_free(probe)
            record = added(rotation, self._target_fence(target_of(probe)), expect_fence)
            self._rotations[rotation.rotation_id] = record
        return rotation_from_record(record)

    async def target_fence(self, target: tuple[str, str, Kind, str]) -> int:
        """The highest fence any rotation of ``target`` reached (0: none)."""
        account, user, kind, slot = target
        async with self._lock:
            return self._target_fence((account, user, str(kind), slot))

    async def target_state(self, target: tuple[str, str, Kind, str]) -> TargetState:
        """``target``'s fence, whether it is busy, and its last change."""
        account, user, kind, slot = target
        key = (account, user, str(kind), slot)
        async with self._lock:
            return target_state(r for r in self._rotations.values() if target_of(r) == key)

    def _target_fence(self, target: tuple[str, str, str, str]) -> int:
        fences = [int(r["lease_fence"]) for r in self._rotations.values() if target_of(r) == target]
        return max(fences, default=0)

    async def get(self, rotation_id: str) -> Rotation:
        """The rotation with that ID. Raises ``NotFound``."""
        async with self._lock:
            return rotation_from_record(self._stored(rotation_id))

    async def save(self, rotation: Rotation) -> Rotation:
        """Compare-and-set ``rotation`` at ``version`` + 1. Raises ``LeaseLost``, ``NotFound``."""
        async with self._lock:
            record = saved(self._stored(rotation.rotation_id), rotation)
            self._check_target_free(record)
            self._rotations[rotation.rotation_id] = record
        return rotation_from_record(record)

    async def acquire(
        self,
        rotation_id: str,
        owner: str,
        ttl: timedelta,
        now: datetime,
        *,
        takeover: LeaseSeen | None = None,
    ) -> Rotation:
        """Take, extend or take over the lease for ``owner``. Raises ``LeaseLost``,
        ``NotFound``."""
        async with self._lock:
            record = acquired(self._stored(rotation_id), owner, ttl, now, takeover)
            self._rotations[rotation_id] = record
        return rotation_from_record(record)

    async def renew(self, rotation: Rotation, ttl: timedelta, now: datetime) -> Rotation:
        """Extend ``rotation``'s own lease (a heartbeat). Raises ``LeaseLost``, ``NotFound``."""
        async with self._lock:
            record = renewed(self._stored(rotation.rotation_id), rotation, ttl, now)
            self._rotations[rotation.rotation_id] = record
        return rotation_from_record(record)

    async def release(self, rotation: Rotation) -> Rotation:
        """Give up ``rotation.lease``; a no-op returning the stored record if not ours."""
        async with self._lock:
            stored = self._stored(rotation.rotation_id)
            record = released(stored, rotation)
            if record is None:
                return rotation_from_record(stored)
            self._rotations[rotation.rotation_id] = record
        return rotation_from_record(record)

    async def list_active(self) -> list[Rotation]:
        """Every unfinished rotation, oldest first."""
        async with self._lock:
            active, self._quarantined = decode_rows(
                r for r in self._rotations.values() if not is_finished(r)
            )
        return sorted(active, key=lambda r: r.created_at)

    async def list_rotations(self, *, user: str | None = None, limit: int = 100) -> list[Rotation]:
        """Up to ``limit`` rotations newest first, optionally only ``user``'s."""
        async with self._lock:
            newest_added_first = reversed(self._rotations.values())
            found, self._quarantined = decode_rows(
                r for r in newest_added_first if user is None or r["user"] == user
            )
        # sorted() is stable, so rotations created at the same instant stay newest-added first
        return sorted(found, key=lambda r: r.created_at, reverse=True)[: max(limit, 0)]

    async def record_step(self, record: StepRecord) -> None:
        """Append one step outcome to a rotation's history."""
        async with self._lock:
            self._steps.setdefault(record.rotation_id, []).append(step_to_record(record))

    def quarantined(self) -> list[CorruptRecord]:
        """The rows the last listing skipped (they do not decode)."""
        return list(self._quarantined)

    async def steps(self, rotation_id: str) -> list[StepRecord]:
        """A rotation's step history, oldest first (empty for an unknown ID)."""
        async with self._lock:
            return [step_from_record(r) for r in self._steps.get(rotation_id, [])]

    def _stored(self, rotation_id: str) -> Record:
        try:
            return self._rotations[rotation_id]
        except KeyError:
            raise NotFound(rotation_id) from None

    def _check_target_free(self, record: Record) -> None:
        """Raise ``Conflict`` if ``record`` is unfinished and another unfinished rotation
        holds its target (what SQLite's partial unique index enforces)."""
        if is_finished(record):
            return
        for other in self._rotations.values():
            if (
                other["rotation_id"] != record["rotation_id"]
                and not is_finished(other)
                and target_of(other) == target_of(record)
            ):
                raise Conflict(describe_target(record), other["rotation_id"])
