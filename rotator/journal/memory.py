"""The in-memory journal, and the journal rules every implementation applies.

The rules are pure functions over stored records (the dicts of ``rotation_to_record``):
given what is stored and what a caller asks, they return the record to write or raise.
``MemoryJournal`` applies them under an ``asyncio.Lock``; ``SqliteJournal`` applies the
same functions inside a ``BEGIN IMMEDIATE`` transaction, so both keep one contract.

Two choices the port leaves open, made here for every implementation:

* ``save`` never changes the lease: only ``add``, ``acquire`` and ``release`` do, so a
  writer cannot grant or extend itself a lease by saving.
* ``release`` keeps ``lease_fence``, so the next ``acquire`` still takes ``fence + 1`` and
  fences only ever grow.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Self

from rotator.errors import Conflict, JournalError, LeaseLost, NotFound
from rotator.journal.base import (
    rotation_from_record,
    rotation_to_record,
    step_from_record,
    step_to_record,
)
from rotator.model import Lease, Rotation, RotationState, StepRecord

Record = dict[str, Any]

LEASE_FIELDS = ("lease_owner", "lease_expires_at", "lease_fence")


def is_finished(record: Record) -> bool:
    """Whether a stored rotation is finished (and so no longer holds its target)."""
    return RotationState(record["state"]).finished


def target_of(record: Record) -> tuple[str, str, str, str]:
    """The stored rotation's target: (account, user, kind, slot)."""
    return (record["account"], record["user"], record["kind"], record["slot"] or "")


def describe_target(record: Record) -> str:
    """A target as an operator reads it, e.g. ``123456789012/alice access-key``."""
    account, user, kind, slot = target_of(record)
    return f"{account}/{user} {kind}" + (f" {slot}" if slot else "")


def added(rotation: Rotation) -> Record:
    """The record ``add`` stores: the rotation at version 1, with its lease if it has one."""
    return rotation_to_record(rotation.evolve(version=1))


def saved(stored: Record, rotation: Rotation) -> Record:
    """The record ``save`` writes over ``stored``. Raises ``LeaseLost`` if the caller is
    behind (stale version) or is not the current lease holder."""
    rotation_id = rotation.rotation_id
    if stored["version"] != rotation.version:
        raise LeaseLost(
            rotation_id, f"version {rotation.version} is stale, the journal has {stored['version']}"
        )
    owner, fence = stored["lease_owner"], stored["lease_fence"]
    lease = rotation.lease
    if owner and (lease is None or (lease.owner, lease.fence) != (owner, fence)):
        raise LeaseLost(rotation_id, f"the lease is held by {owner} with fence {fence}")
    record = rotation_to_record(rotation.evolve(version=rotation.version + 1))
    record.update({name: stored[name] for name in LEASE_FIELDS})
    return record


def acquired(stored: Record, owner: str, ttl: timedelta, now: datetime) -> Record:
    """The record ``acquire`` writes: ``owner`` holding the lease until ``now + ttl``.

    A free or expired lease is taken with the next fence; ``owner``'s own live lease is
    extended with the same fence. Raises ``LeaseLost`` if another owner holds a live one.
    """
    current = rotation_from_record(stored)
    lease = current.lease
    if lease is None or lease.expires_at <= now:
        fence = int(stored["lease_fence"]) + 1
    elif lease.owner == owner:
        fence = lease.fence
    else:
        raise LeaseLost(
            current.rotation_id,
            f"held by {lease.owner} until {lease.expires_at.isoformat()}",
        )
    new_lease = Lease(owner=owner, expires_at=now + ttl, fence=fence)
    return rotation_to_record(current.evolve(lease=new_lease, version=current.version + 1))


def released(stored: Record, rotation: Rotation) -> Record | None:
    """The record ``release`` writes, or None if ``rotation.lease`` is no longer the
    stored one (then release is a no-op). The fence is kept so it never goes back."""
    lease = rotation.lease
    stored_lease = (stored["lease_owner"], stored["lease_fence"])
    if lease is None or stored_lease != (lease.owner, lease.fence):
        return None
    cleared = {"lease_owner": None, "lease_expires_at": None, "version": stored["version"] + 1}
    return stored | cleared


class MemoryJournal:
    """A real journal kept in dicts: for tests, dry runs and single-process use."""

    def __init__(self) -> None:
        self._rotations: dict[str, Record] = {}  # insertion order is add order
        self._steps: dict[str, list[Record]] = {}
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        """Nothing to open: the records live as long as this object."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Nothing to close; the records are kept for a later ``async with``."""

    async def add(self, rotation: Rotation) -> Rotation:
        """Insert a new rotation at version 1. Raises ``Conflict`` for a busy target."""
        record = added(rotation)
        async with self._lock:
            if rotation.rotation_id in self._rotations:
                raise JournalError(f"rotation {rotation.rotation_id} already exists")
            self._check_target_free(record)
            self._rotations[rotation.rotation_id] = record
        return rotation_from_record(record)

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
        self, rotation_id: str, owner: str, ttl: timedelta, now: datetime
    ) -> Rotation:
        """Take or extend the lease for ``owner``. Raises ``LeaseLost``, ``NotFound``."""
        async with self._lock:
            record = acquired(self._stored(rotation_id), owner, ttl, now)
            self._rotations[rotation_id] = record
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
            active = [
                rotation_from_record(r) for r in self._rotations.values() if not is_finished(r)
            ]
        return sorted(active, key=lambda r: r.created_at)

    async def list_rotations(self, *, user: str | None = None, limit: int = 100) -> list[Rotation]:
        """Up to ``limit`` rotations newest first, optionally only ``user``'s."""
        async with self._lock:
            newest_added_first = reversed(self._rotations.values())
            found = [
                rotation_from_record(r)
                for r in newest_added_first
                if user is None or r["user"] == user
            ]
        # sorted() is stable, so rotations created at the same instant stay newest-added first
        return sorted(found, key=lambda r: r.created_at, reverse=True)[: max(limit, 0)]

    async def record_step(self, record: StepRecord) -> None:
        """Append one step outcome to a rotation's history."""
        async with self._lock:
            self._steps.setdefault(record.rotation_id, []).append(step_to_record(record))

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
