"""The journal port: durable rotation records, their step history, and leases.

Every implementation (``memory``, ``sqlite``, later ``dynamodb``) passes the same contract
suite in ``tests/journal/test_contract.py``. Rules every implementation keeps:

* At most one *unfinished* rotation per target ``(account, user, kind, slot)``:
  ``add`` raises ``Conflict`` for a second one.
* ``version`` grows by one on every write; ``save`` is a compare-and-set on it.
* Leases fence writers: ``save`` and ``release`` succeed only for the lease owner whose
  ``fence`` is the record's current one, so a worker whose lease was taken over cannot write.
* Fences grow per target: a new rotation is fenced above every earlier rotation of its
  target, so a sink can refuse a late write of an older rotation or lease (``epoch`` names
  the journal the fences come from: a sink compares fences of one journal only).
* Another owner's lease is taken over only with proof of a full lease period seen on the
  taker's own clock (``acquire(takeover=...)``), never by comparing wall clocks.
* No secret is ever stored: records hold IDs, states, times and reasons only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from rotator.errors import CorruptRecord
from rotator.model import (
    Kind,
    Lease,
    LeaseSeen,
    Outcome,
    Rotation,
    RotationState,
    Step,
    StepRecord,
)
from rotator.policy import MAX_DURATION


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the journal knows of one target (account, user, kind, slot), read at once.

    ``fence``: what ``target_fence`` returns. ``busy``: an unfinished rotation holds the
    target. ``changed_at``: when a rotation of the target was last written (on its
    writer's clock; None if none ever was). Every change a rotation makes in IAM comes
    before a write of its record (the step's state, at the latest the finishing one), so
    a target neither busy nor changed since a moment ago was not changed in IAM by any
    rotator since then either. A journal that cannot tell (a record of an older version)
    says it changed now."""

    fence: int
    busy: bool
    changed_at: datetime | None


class Journal(Protocol):
    """Durable rotation records with leases. Use as ``async with journal:``."""

    async def __aenter__(self) -> Journal:
        """Open connections (and create the schema if it is missing)."""
        ...

    async def __aexit__(self, *exc: object) -> None:
        """Close connections."""
        ...

    @property
    def epoch(self) -> str:
        """This journal's identity (random, made with its storage): fences are comparable
        only between writers of the same epoch. Valid once opened."""
        ...

    async def add(self, rotation: Rotation, *, expect_fence: int | None = None) -> Rotation:
        """Insert a new rotation and return it as stored (``version`` 1).

        ``rotation.lease`` may be set so the creator holds the lease from the start; its
        fence is raised above ``target_fence`` of the target. Raises ``Conflict`` if an
        unfinished rotation exists for ``rotation.target``, or if ``expect_fence`` is given
        and ``target_fence`` is no longer it (a rotation of the target happened since).
        """
        ...

    async def target_fence(self, target: tuple[str, str, Kind, str]) -> int:
        """The highest fence any rotation of ``target`` (account, user, kind, slot)
        reached: 0 if none. ``add(expect_fence=...)`` compares with it."""
        ...

    async def target_state(self, target: tuple[str, str, Kind, str]) -> TargetState:
        """``target``'s fence, whether it is busy, and its last change (``TargetState``)."""
        ...

    async def get(self, rotation_id: str) -> Rotation:
        """The rotation with that ID. Raises ``NotFound``."""
        ...

    async def save(self, rotation: Rotation) -> Rotation:
        """Write ``rotation`` and return it with ``version`` + 1.

        Succeeds only if the stored version equals ``rotation.version`` and, when the stored
        record has a lease, ``rotation.lease`` has the same owner and fence. Raises
        ``LeaseLost`` otherwise (someone else wrote or took the lease), ``NotFound`` if absent.
        """
        ...

    async def acquire(
        self,
        rotation_id: str,
        owner: str,
        ttl: timedelta,
        now: datetime,
        *,
        takeover: LeaseSeen | None = None,
    ) -> Rotation:
        """Take (or extend) the lease on a rotation and return the record holding it.

        A free lease is taken with ``fence`` + 1; one already held by ``owner`` is extended
        with the same fence. Another owner's lease is taken (``fence`` + 1) only if
        ``takeover`` equals what the record holds now. Raises ``LeaseLost`` (with ``seen``)
        otherwise, ``NotFound`` if absent.
        """
        ...

    async def renew(self, rotation: Rotation, ttl: timedelta, now: datetime) -> Rotation:
        """Extend ``rotation``'s own lease to ``now + ttl`` without bumping ``version`` (a
        heartbeat: the holder's steps can still save the record they hold). Raises
        ``LeaseLost`` if the lease is no longer ``rotation.lease``."""
        ...

    async def release(self, rotation: Rotation) -> Rotation:
        """Give up the lease ``rotation.lease`` (no-op if it is no longer ours)."""
        ...

    async def list_active(self) -> list[Rotation]:
        """Every unfinished rotation, oldest first. Rows that do not decode are skipped
        and kept for ``quarantined``."""
        ...

    def quarantined(self) -> list[CorruptRecord]:
        """The rows the last ``list_active`` or ``list_rotations`` skipped because they do
        not decode (``CorruptRecord``), for the caller to report."""
        ...

    async def list_rotations(self, *, user: str | None = None, limit: int = 100) -> list[Rotation]:
        """Rotations newest first, optionally only one user's."""
        ...

    async def record_step(self, record: StepRecord) -> None:
        """Append one step outcome to a rotation's history."""
        ...

    async def steps(self, rotation_id: str) -> list[StepRecord]:
        """A rotation's step history, oldest first."""
        ...


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def rotation_to_record(rotation: Rotation) -> dict[str, Any]:
    """A flat, JSON-safe dict of a rotation: the row a journal stores."""
    lease = rotation.lease
    return {
        "rotation_id": rotation.rotation_id,
        "account": rotation.account,
        "user": rotation.user,
        "kind": str(rotation.kind),
        "slot": rotation.slot,
        "rule": rotation.rule,
        "state": str(rotation.state),
        "old_credential_id": rotation.old_credential_id,
        "new_credential_id": rotation.new_credential_id,
        "delete_first": rotation.delete_first,
        "emergency": rotation.emergency,
        "deactivate_after": rotation.deactivate_after.total_seconds(),
        "delete_after": rotation.delete_after.total_seconds(),
        "created_at": _dt(rotation.created_at),
        "updated_at": _dt(rotation.updated_at),
        "creating_at": _dt(rotation.creating_at),
        "promoted_at": _dt(rotation.promoted_at),
        "deactivated_at": _dt(rotation.deactivated_at),
        "finished_at": _dt(rotation.finished_at),
        "held_since": _dt(rotation.held_since),
        "reason": rotation.reason,
        "known_ids": ",".join(rotation.known_ids),
        "version": rotation.version,
        "lease_owner": lease.owner if lease else None,
        "lease_expires_at": _dt(lease.expires_at) if lease else None,
        "lease_fence": lease.fence if lease else 0,
    }


def rotation_from_record(row: dict[str, Any]) -> Rotation:
    """The inverse of ``rotation_to_record``. Raises ``CorruptRecord`` naming the field of
    a row that does not decode (hand-edited, or written by a different version)."""
    rotation_id = str(row.get("rotation_id") or "?")
    field = "rotation_id"
    try:
        field = "lease_expires_at"
        lease = None
        if row.get("lease_owner"):
            expires = _parse_dt(row.get("lease_expires_at"))
            if expires is None:
                raise ValueError("a lease owner without an expiry")
            field = "lease_fence"
            lease = Lease(
                owner=str(row["lease_owner"]), expires_at=expires, fence=int(row["lease_fence"])
            )
        field = "created_at"
        created = _required_dt(row.get("created_at"))
        field = "updated_at"
        updated = _required_dt(row.get("updated_at"))
        field = "kind"
        kind = Kind(row["kind"])
        field = "state"
        state = RotationState(row["state"])
        times: dict[str, datetime | None] = {}
        for field in ("creating_at", "promoted_at", "deactivated_at", "finished_at", "held_since"):
            value = row.get(field)
            times[field] = _required_dt(value) if value else None
        field = "deactivate_after"
        deactivate_after = _seconds(row.get("deactivate_after"))
        field = "delete_after"
        delete_after = _seconds(row.get("delete_after"))
        field = "version"
        version = int(row["version"])
        field = "rotation_id"
        return Rotation(
            rotation_id=str(row["rotation_id"]),
            account=str(row["account"]),
            user=str(row["user"]),
            kind=kind,
            slot=row.get("slot") or "",
            rule=str(row["rule"]),
            state=state,
            old_credential_id=row.get("old_credential_id"),
            new_credential_id=row.get("new_credential_id"),
            delete_first=row.get("delete_first"),
            emergency=bool(row.get("emergency")),
            deactivate_after=deactivate_after,
            delete_after=delete_after,
            created_at=created,
            updated_at=updated,
            reason=row.get("reason") or "",
            known_ids=tuple(i for i in (row.get("known_ids") or "").split(",") if i),
            version=version,
            lease=lease,
            **times,
        )
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CorruptRecord(rotation_id, field, detail[:200], _target(row)) from None


def _required_dt(value: Any) -> datetime:
    when = _parse_dt(value)
    if when is None:
        raise ValueError("missing")
    if when.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return when


def _seconds(value: Any) -> timedelta:
    seconds = float(value)
    if not 0 <= seconds <= MAX_DURATION.total_seconds():
        raise ValueError(f"{seconds:g}s is out of range (0 to {MAX_DURATION.days}d)")
    return timedelta(seconds=seconds)


def _target(row: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """The row's (account, user, kind, slot) if those are readable strings."""
    parts = (row.get("account"), row.get("user"), row.get("kind"), row.get("slot") or "")
    return parts if all(isinstance(p, str) for p in parts) else None  # type: ignore[return-value]


def decode_rows(rows: Iterable[dict[str, Any]]) -> tuple[list[Rotation], list[CorruptRecord]]:
    """The rotations ``rows`` hold, and a ``CorruptRecord`` for each row that does not
    decode (quarantined: skipped here, reported by the caller)."""
    good: list[Rotation] = []
    bad: list[CorruptRecord] = []
    for row in rows:
        try:
            good.append(rotation_from_record(row))
        except CorruptRecord as exc:
            bad.append(exc)
    return good, bad


def step_to_record(record: StepRecord) -> dict[str, Any]:
    return {
        "rotation_id": record.rotation_id,
        "at": record.at.isoformat(),
        "step": str(record.step),
        "outcome": str(record.outcome),
        "reason": record.reason,
        "run_id": record.run_id,
        "credential_id": record.credential_id,
    }


def step_from_record(row: dict[str, Any]) -> StepRecord:
    try:
        at = _required_dt(row.get("at"))
    except ValueError as exc:
        raise CorruptRecord(str(row.get("rotation_id") or "?"), "step.at", str(exc)[:200]) from None
    return StepRecord(
        rotation_id=row["rotation_id"],
        at=at,
        step=Step(row["step"]),
        outcome=Outcome(row["outcome"]),
        reason=row.get("reason") or "",
        run_id=row.get("run_id") or "",
        credential_id=row.get("credential_id"),
    )
