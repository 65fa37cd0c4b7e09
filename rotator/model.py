"""Domain types: plain, frozen data that the planner and the engine reason about.

Nothing here performs I/O. ``Credential`` and ``Holder`` describe what IAM holds,
``Rotation`` is the durable record of one rotation, ``Decision`` / ``Plan`` are what the
planner decided and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Self


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (every datetime in rotator is)."""
    return datetime.now(UTC)


def utc_iso(value: datetime) -> str:
    """``value`` as UTC ISO 8601 ending in ``Z`` (``2026-11-22T03:00:04.120000Z``), the one
    spelling of a timestamp in rotator's JSON output (the audit log's ``ts`` has it too)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    """A short random identifier such as ``rot-3f9a1c2b7d4e``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Kind(StrEnum):
    """The kinds of IAM credential rotator knows, named as in the policy file. Each is
    declared by one module in ``rotator/kinds/`` (its facts, rule options and IAM calls)."""

    ACCESS_KEY = "access-key"
    SIGNING_CERTIFICATE = "signing-certificate"
    SERVER_CERTIFICATE = "server-certificate"
    LOGIN_PROFILE = "login-profile"
    SSH_PUBLIC_KEY = "ssh-public-key"
    SERVICE_CREDENTIAL = "service-credential"
    OIDC_THUMBPRINT = "oidc-thumbprint"


class Shape(StrEnum):
    """How a kind is rotated."""

    TWO_SLOT = "two-slot"  # a second credential beside the old one, then the old retires
    IN_PLACE = "in-place"  # one credential changed in place (nothing old to retire)
    VERSIONED = "versioned"  # a new, differently named version; the old one retires


@dataclass(frozen=True, kw_only=True)
class KindFacts:
    """What the planner and the engine know of a kind, without its IAM calls. Each kind
    module in ``rotator/kinds/`` declares them once, on its rule class: code with a rule
    reads ``rule.facts``; code with only a ``Kind`` asks ``rotator.kinds.facts_of``."""

    kind: Kind
    shape: Shape
    noun: str  # one credential, as reasons name it: "access key", "console password"
    # How many IAM lets one holder hold (per slot); None: no per-holder limit applies.
    limit: int | None = None
    account_held: bool = False  # held by the account itself (server certificates), not users
    in_credential_report: bool = False  # IAM's credential report lists them

    def __post_init__(self) -> None:
        if self.shape is Shape.TWO_SLOT and (self.limit is None or self.limit < 2):
            raise ValueError(f"{self.kind}: a two-slot kind needs a limit of at least 2")


class Status(StrEnum):
    """A credential's IAM status, spelled as IAM spells it."""

    ACTIVE = "Active"
    INACTIVE = "Inactive"
    EXPIRED = "Expired"  # service-specific credentials with a lifetime (Bedrock API keys)


@dataclass(frozen=True, kw_only=True, slots=True)
class Credential:
    """One credential as IAM reports it. IDs are not secrets; no secret lives here."""

    kind: Kind
    credential_id: str
    status: Status
    created: datetime
    last_used: datetime | None = None
    expires: datetime | None = None  # certificates: notAfter; Bedrock API keys: ExpirationDate
    not_before: datetime | None = None  # certificates: notBefore
    slot: str = ""  # the service of a service credential; "" for other kinds

    @property
    def active(self) -> bool:
        return self.status is Status.ACTIVE

    def age(self, now: datetime) -> timedelta:
        return now - self.created


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """A kind's own verdict on a holder, from what it saw outside IAM: ``action`` is
    ``Action.ROTATE`` (a new credential is due now), ``Action.BLOCK`` (nothing may change
    until a human acts) or ``Action.SKIP``; ``reason`` says why, for the plan."""

    action: Action
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Holder:
    """An IAM user and the credentials of the inventoried kinds it holds."""

    account: str
    name: str
    arn: str
    path: str = "/"
    tags: Mapping[str, str] = field(default_factory=dict)
    credentials: tuple[Credential, ...] = ()
    account_held: bool = False  # held by the account itself (server certificates), not a user
    # Server certificates: notBefore of the certificate the rule's issuer has ready
    # (a directory issuer's cert.pem), if any; it is uploaded when newer than IAM's.
    offered: datetime | None = None
    # What the kind found that dates cannot tell (OIDC providers: whether the chain the
    # provider serves has its thumbprint in IAM); the planner decides by it.
    finding: Finding | None = None
    # The (kind, slot)s whose credentials were listed from IAM for this holder (not taken
    # from the credential report), and when the first of those listings was sent
    # (``time.monotonic``): a sweep's re-check may stand on them (``rotation.rechecks``).
    listed: tuple[tuple[Kind, str], ...] = ()
    listed_at: float | None = None

    def of_kind(self, kind: Kind, slot: str = "") -> tuple[Credential, ...]:
        """This holder's credentials of one kind (and slot), oldest first."""
        found = (c for c in self.credentials if c.kind is kind and c.slot == slot)
        return tuple(sorted(found, key=lambda c: (c.created, c.credential_id)))


@dataclass(frozen=True, kw_only=True)
class Inventory:
    """What IAM held for one account when it was read."""

    account: str
    holders: tuple[Holder, ...]


class RotationState(StrEnum):
    """Where a rotation stands. Each state is journalled before the step that leaves it."""

    PLANNED = "planned"  # decided and journalled; nothing changed in IAM yet
    CREATING = "creating"  # intent to create journalled; the IAM call may or may not have run
    CREATED = "created"  # the new credential exists and its secret is pending in the sink
    VERIFIED = "verified"  # the new credential was shown to work
    PROMOTED = "promoted"  # the sink's current is the new secret; the old one is previous
    DEACTIVATED = "deactivated"  # the old credential is Inactive
    COMPLETED = "completed"  # the old credential is deleted; nothing left to do
    FAILED = "failed"  # a permanent error stopped it; the reason says which
    ROLLED_BACK = "rolled-back"  # an operator put the old credential back

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({RotationState.COMPLETED, RotationState.FAILED, RotationState.ROLLED_BACK})


class Step(StrEnum):
    """The steps of the rotation protocol, in the order a normal rotation runs them."""

    PLAN = "plan"  # the planner's verdict (logged for blocked decisions; nothing changes)
    CREATE = "create"  # make room, journal intent, create the credential, store it pending
    VERIFY = "verify"  # prove the new credential works
    PROMOTE = "promote"  # the sink's current becomes the new secret
    DEACTIVATE = "deactivate"  # set the old credential Inactive (unless still in use)
    DELETE = "delete"  # delete the old credential
    ROLLBACK = "rollback"  # operator: reactivate the old credential, make it current again
    DISABLE = "disable"  # deactivate a credential unused for too long (not a rotation)


class Outcome(StrEnum):
    """How a step ended, as written to the audit log and the journal."""

    DONE = "done"  # the step did what it set out to do
    ALREADY_DONE = "already-done"  # a replay found the step's effect already in place
    HELD = "held"  # not safe yet (old credential still in use); retried next sweep
    RETRY = "retry"  # a transient error; retried next sweep
    FAILED = "failed"  # a permanent error; the rotation is FAILED
    BLOCKED = "blocked"  # rotator will not start this without a human
    DRY_RUN = "dry-run"  # would have run


@dataclass(frozen=True, kw_only=True)
class Lease:
    """Who may work a rotation until when. ``fence`` grows by one on every acquisition;
    a writer whose fence is not the record's current one has lost the lease."""

    owner: str
    expires_at: datetime
    fence: int


@dataclass(frozen=True, kw_only=True)
class LeaseSeen:
    """What a worker saw of another's lease: a takeover must present it unchanged a full
    lease period later (the journal compares it with what it holds then)."""

    version: int
    owner: str | None
    fence: int
    expires_at: str | None  # as stored (ISO 8601): a renewal changes it


@dataclass(frozen=True, kw_only=True)
class Rotation:
    """The durable record of one rotation of one credential."""

    rotation_id: str
    account: str
    user: str
    kind: Kind
    rule: str
    slot: str = ""
    state: RotationState = RotationState.PLANNED
    old_credential_id: str | None = None
    new_credential_id: str | None = None
    delete_first: str | None = None  # an inactive credential to delete to make room
    emergency: bool = False
    deactivate_after: timedelta = timedelta(0)
    delete_after: timedelta = timedelta(0)
    created_at: datetime
    updated_at: datetime
    creating_at: datetime | None = None  # when the create intent was journalled
    promoted_at: datetime | None = None
    deactivated_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str = ""
    held_since: datetime | None = None
    known_ids: tuple[str, ...] = ()  # the holder's credential IDs just before the create call
    version: int = 0  # bumped by every journal write (optimistic concurrency)
    lease: Lease | None = None

    @classmethod
    def start(
        cls,
        *,
        account: str,
        user: str,
        kind: Kind,
        rule: str,
        now: datetime,
        slot: str = "",
        old_credential_id: str | None = None,
        delete_first: str | None = None,
        deactivate_after: timedelta = timedelta(0),
        delete_after: timedelta = timedelta(0),
        emergency: bool = False,
        reason: str = "",
    ) -> Self:
        return cls(
            rotation_id=new_id("rot"),
            account=account,
            user=user,
            kind=kind,
            rule=rule,
            slot=slot,
            old_credential_id=old_credential_id,
            delete_first=delete_first,
            deactivate_after=deactivate_after,
            delete_after=delete_after,
            emergency=emergency,
            created_at=now,
            updated_at=now,
            reason=reason,
        )

    def evolve(self, **changes: object) -> Self:
        """A copy with ``changes`` applied (the journal bumps ``version`` on write)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def target(self) -> tuple[str, str, Kind, str]:
        """What is being rotated: (account, user, kind, slot). One active rotation each."""
        return (self.account, self.user, self.kind, self.slot)


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One step outcome as the journal keeps it (the audit log has the same facts)."""

    rotation_id: str
    at: datetime
    step: Step
    outcome: Outcome
    reason: str = ""
    run_id: str = ""
    credential_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """The step as JSON output shows it: step, outcome, at, credential_id, reason."""
        return {
            "step": str(self.step),
            "outcome": str(self.outcome),
            "at": utc_iso(self.at),
            "credential_id": self.credential_id,
            "reason": self.reason,
        }


class Action(StrEnum):
    """What the planner decided for one credential."""

    ROTATE = "rotate"  # start a new rotation
    ADVANCE = "advance"  # a rotation in flight has a step due now
    WAIT = "wait"  # a rotation in flight; its next step is not due yet
    SKIP = "skip"  # nothing to do: not due, or nothing to rotate
    BLOCK = "block"  # needs a human; nothing will be changed
    EXCLUDE = "exclude"  # the rule excludes this holder
    DISABLE = "disable"  # deactivate (or remove) a credential unused for too long


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """One planner decision, always with the reason an operator would want."""

    account: str
    user: str
    kind: Kind
    rule: str
    action: Action
    reason: str
    slot: str = ""
    credential_id: str | None = None
    delete_first: str | None = None
    rotation_id: str | None = None
    due_at: datetime | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "account": self.account,
            "user": self.user,
            "kind": str(self.kind),
            "slot": self.slot or None,
            "rule": self.rule,
            "credential_id": self.credential_id,
            "action": str(self.action),
            "reason": self.reason,
            "delete_first": self.delete_first,
            "rotation_id": self.rotation_id,
            "due_at": utc_iso(self.due_at) if self.due_at else None,
        }


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Every decision of one planning pass."""

    decisions: tuple[Decision, ...]

    def __iter__(self) -> Iterator[Decision]:
        return iter(self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)
