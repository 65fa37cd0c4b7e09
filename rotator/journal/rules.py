"""The journal rules every implementation applies, as pure functions over stored records.

A stored record is the dict of ``rotation_to_record``; given what is stored and what a
caller asks, each function returns the record to write or raises. ``MemoryJournal`` applies
them under an ``asyncio.Lock``, ``SqliteJournal`` inside a ``BEGIN IMMEDIATE`` transaction,
so every backend keeps one contract.

Two choices the port leaves open, made here for every implementation:

* ``save`` never changes the lease: only ``add``, ``acquire`` and ``release`` do, so a
  writer cannot grant or extend itself a lease by saving.
* ``release`` keeps ``lease_fence``, so the next ``acquire`` still takes ``fence + 1`` and
  fences only ever grow.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rotator.errors import LeaseLost
from rotator.journal.base import rotation_from_record, rotation_to_record
from rotator.model import Lease, Rotation, RotationState

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
            holder=lease.owner,
            until=lease.expires_at.isoformat(),
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
