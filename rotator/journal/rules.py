"""The journal rules every implementation applies, as pure functions over stored records.

A stored record is the dict of ``rotation_to_record``; given what is stored and what a
caller asks, each function returns the record to write or raises. ``MemoryJournal`` applies
them under an ``asyncio.Lock``, ``SqliteJournal`` inside a ``BEGIN IMMEDIATE`` transaction,
so every backend keeps one contract.

Choices the port leaves open, made here for every implementation:

* ``save`` never changes the lease: only ``add``, ``acquire``, ``renew`` and ``release``
  do, so a writer cannot grant or extend itself a lease by saving.
* ``release`` keeps ``lease_fence``, so the next ``acquire`` still takes ``fence + 1`` and
  fences only ever grow.
* Fences grow per *target*, across rotations: ``add`` starts a rotation above every fence
  its target's earlier rotations reached (``target_fence``), so a sink can refuse a late
  write of any older rotation, not only of an older lease of the same one.
* Taking over another owner's lease never trusts a wall clock (the owner's clock may be
  behind, ours ahead): the taker must present the ``LeaseSeen`` it read a full lease
  period earlier *by its own monotonic clock* (``Driver`` keeps that clock), and the record
  must not have moved since — a live holder renews, which moves it. ``expires_at`` is
  informational (``status``, "until when").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from rotator.errors import Conflict, LeaseLost
from rotator.journal.base import TargetState, rotation_from_record, rotation_to_record
from rotator.model import Lease, LeaseSeen, Rotation, RotationState

Record = dict[str, Any]

LEASE_FIELDS = ("lease_owner", "lease_expires_at", "lease_fence")


def target_state(records: Iterable[Record]) -> TargetState:
    """A target's ``TargetState`` from its rotations' records (their ``lease_fence``,
    ``state`` and ``updated_at``). A record that does not decode holds the target (as
    ``is_finished`` says) and counts as changed now."""
    fence, busy, changed = 0, False, None
    for record in records:
        fence = max(fence, int(record["lease_fence"] or 0))
        busy = busy or not is_finished(record)
        at = changed_at(record.get("updated_at"))
        changed = at if changed is None or at > changed else changed
    return TargetState(fence=fence, busy=busy, changed_at=changed)


def changed_at(value: Any) -> datetime:
    """A stored time of a target's last change; one that does not decode (or has no zone)
    is taken as now: a re-check then asks IAM rather than trust an unknown."""
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        return datetime.now(UTC)
    return at


def is_finished(record: Record) -> bool:
    """Whether a stored rotation is finished (and so no longer holds its target)."""
    try:
        return RotationState(record["state"]).finished
    except (KeyError, ValueError):  # a corrupt row holds its target until a human looks
        return False


def target_of(record: Record) -> tuple[str, str, str, str]:
    """The stored rotation's target: (account, user, kind, slot)."""
    return (record["account"], record["user"], record["kind"], record["slot"] or "")


def describe_target(record: Record) -> str:
    """A target as an operator reads it, e.g. ``123456789012/alice access-key``."""
    account, user, kind, slot = target_of(record)
    return f"{account}/{user} {kind}" + (f" {slot}" if slot else "")


def added(rotation: Rotation, target_fence: int, expect_fence: int | None = None) -> Record:
    """The record ``add`` stores: the rotation at version 1, with its lease if it has one,
    fenced above ``target_fence`` (the highest fence its target's rotations reached).
    Raises ``Conflict`` if ``expect_fence`` is given and the target has moved since the
    caller read it (another rotation of the same credential happened meanwhile)."""
    if expect_fence is not None and expect_fence != target_fence:
        raise Conflict(
            describe_target(rotation_to_record(rotation)),
            f"a rotation since planning (fence {expect_fence} -> {target_fence})",
        )
    lease = rotation.lease
    if lease is not None:
        lease = Lease(
            owner=lease.owner, expires_at=lease.expires_at, fence=max(lease.fence, target_fence + 1)
        )
    record = rotation_to_record(rotation.evolve(version=1, lease=lease))
    if lease is None:
        record["lease_fence"] = target_fence  # the first acquire takes target_fence + 1
    return record


def seen(record: Record) -> LeaseSeen:
    """What a would-be taker saw of ``record``'s lease (see ``acquired``)."""
    return LeaseSeen(
        version=int(record["version"]),
        owner=record["lease_owner"],
        fence=int(record["lease_fence"]),
        expires_at=record["lease_expires_at"],
    )


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


def acquired(
    stored: Record,
    owner: str,
    ttl: timedelta,
    now: datetime,
    takeover: LeaseSeen | None = None,
) -> Record:
    """The record ``acquire`` writes: ``owner`` holding the lease until ``now + ttl``.

    A free lease is taken with the next fence; ``owner``'s own lease is extended with the
    same fence. Another owner's lease is taken over (next fence) only with ``takeover``
    equal to what the record holds now: proof that the caller saw it, unchanged, a full
    lease period earlier on its own clock (or saw its owner dead). Else ``LeaseLost``,
    carrying what was seen for a later takeover."""
    current = rotation_from_record(stored)
    lease = current.lease
    if lease is None or lease.owner == owner:
        fence = int(stored["lease_fence"]) + (lease is None)
    elif takeover is not None and takeover == seen(stored):
        fence = lease.fence + 1
    else:
        raise LeaseLost(
            current.rotation_id,
            f"held by {lease.owner} until {lease.expires_at.isoformat()}",
            holder=lease.owner,
            until=lease.expires_at.isoformat(),
            seen=seen(stored),
        )
    new_lease = Lease(owner=owner, expires_at=now + ttl, fence=fence)
    return rotation_to_record(current.evolve(lease=new_lease, version=current.version + 1))


def renewed(stored: Record, rotation: Rotation, ttl: timedelta, now: datetime) -> Record:
    """The record ``renew`` writes: ``rotation``'s own lease extended to ``now + ttl``,
    everything else (``version`` included) as stored, so a step holding the record can
    still save it. Raises ``LeaseLost`` if the lease is no longer ``rotation``'s."""
    lease = rotation.lease
    if lease is None or (stored["lease_owner"], stored["lease_fence"]) != (
        lease.owner,
        lease.fence,
    ):
        raise LeaseLost(
            rotation.rotation_id,
            f"the lease is held by {stored['lease_owner'] or 'nobody'} with fence "
            f"{stored['lease_fence']}",
            holder=stored["lease_owner"],
            until=stored["lease_expires_at"],
        )
    return stored | {"lease_expires_at": (now + ttl).isoformat()}


def released(stored: Record, rotation: Rotation) -> Record | None:
    """The record ``release`` writes, or None if ``rotation.lease`` is no longer the
    stored one (then release is a no-op). The fence is kept so it never goes back."""
    lease = rotation.lease
    stored_lease = (stored["lease_owner"], stored["lease_fence"])
    if lease is None or stored_lease != (lease.owner, lease.fence):
        return None
    cleared = {"lease_owner": None, "lease_expires_at": None, "version": stored["version"] + 1}
    return stored | cleared
