"""On-demand and emergency rotation: what the operator asked for, checked before anything
changes.

``choose`` is pure: given the holder as IAM has it now, the rule that owns it and the
request, it returns the credential to rotate and the one to delete first to make room, or
raises ``InputError`` with a message the operator can act on. The engine then runs the
normal protocol (``Engine.rotate_now``); an *emergency* rotation deactivates the named
credential first and deletes it ``hold`` after the new one is promoted.

``escalate`` is the same for a credential whose rotation is already under way (a sweep
started it, or is waiting out ``deactivate_after``): rather than refuse, that rotation
becomes an emergency, so the leaked credential is deactivated at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from rotator.errors import InputError, Refused
from rotator.kinds import facts_of
from rotator.model import Credential, Holder, Kind, Rotation, Shape
from rotator.policy import Rule


@dataclass(frozen=True, kw_only=True)
class Request:
    """What the operator asked to rotate."""

    user: str | None = None
    kind: Kind = Kind.ACCESS_KEY
    credential_id: str | None = None
    slot: str = ""
    emergency: bool = False
    hold: timedelta = timedelta(0)

    def describe(self) -> str:
        what = f"{self.kind} {self.credential_id}" if self.credential_id else str(self.kind)
        return f"{what} of {self.user}" if self.user else what


_ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}")


def access_key_id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an access key ID (IAM's: 16 to 128 upper-case
    letters and digits, e.g. AKIA…), or None. Checked before any AWS call."""
    if not value.strip():
        return "is empty"
    if not _ACCESS_KEY_ID.fullmatch(value):
        # Not echoed: what was pasted here may be a secret access key.
        return (
            f"is not an access key ID ({len(value)} characters given; an ID is 16-128 "
            "upper-case letters and digits, e.g. AKIA…)"
        )
    return None


@dataclass(frozen=True, kw_only=True)
class Choice:
    """The credential to rotate and, if the holder is at IAM's limit, the one to delete
    first (never an active one, except the leaked credential itself in an emergency)."""

    old: Credential
    delete_first: Credential | None


def pick_rule(rules: list[Rule], holder: Holder, request: Request) -> Rule:
    """The first rule of the requested kind that selects the holder: it names the sink."""
    for rule in rules:
        if (
            rule.kind is request.kind
            and rule.slot == request.slot
            and rule.selects(holder.name, holder.path, holder.tags)
            and rule.exclude.reason(holder.name, holder.tags) is None
        ):
            return rule
    raise InputError(
        f"no rule of kind {request.kind} selects {holder.name}: rotator needs one to know "
        "where the new secret goes (or the user is excluded)"
    )


def choose(holder: Holder, request: Request) -> Choice:
    """Which credential to rotate, checked against what IAM holds now."""
    noun = facts_of(request.kind).noun
    creds = holder.of_kind(request.kind, request.slot)
    active = [c for c in creds if c.active]
    if request.credential_id is not None:
        old = next((c for c in creds if c.credential_id == request.credential_id), None)
        if old is None:
            held = ", ".join(c.credential_id for c in creds) or "none"
            raise InputError(f"{holder.name} has no {noun} {request.credential_id} (has: {held})")
    elif len(active) == 1:
        old = active[0]
    else:
        ids = ", ".join(c.credential_id for c in active) or "none"
        raise InputError(
            f"{holder.name} has {len(active)} active {noun}s ({ids}): name one with --credential-id"
        )
    if not request.emergency and not old.active:
        raise InputError(f"{noun} {old.credential_id} is inactive: nothing to rotate")
    if not request.emergency and len(active) > 1:
        raise InputError(
            f"{holder.name} has {len(active)} active {noun}s: rotator will not guess which one "
            "is in use; for a leaked one use --emergency"
        )
    return Choice(old=old, delete_first=_room(creds, old, request))


def _room(creds: tuple[Credential, ...], old: Credential, request: Request) -> Credential | None:
    facts = facts_of(request.kind)
    if facts.shape is not Shape.TWO_SLOT or facts.limit is None or len(creds) < facts.limit:
        return None
    spare = next((c for c in creds if not c.active and c is not old), None)
    if spare is not None:
        return spare
    if request.emergency and request.hold == timedelta(0):
        return old  # deactivated first, then deleted to make room
    noun = facts.noun
    raise InputError(
        f"{old.credential_id}'s user already has {len(creds)} {noun}s, IAM's limit: the new one "
        "needs room. With --emergency and --hold 0s the leaked one is deleted at once; "
        "otherwise deactivate and delete one first"
    )


def escalate(rotation: Rotation, request: Request, now: datetime) -> Rotation:
    """``rotation``, under way for the holder an operator reports a leak of, made an
    emergency: its old credential — the leaked one — is deactivated next, whoever still
    uses it, and deleted ``request.hold`` after that. Raises ``InputError`` if the request
    does not name the credential, ``Refused`` if the rotation is not retiring it."""
    rid, leaked = rotation.rotation_id, request.credential_id
    noun = facts_of(rotation.kind).noun
    if leaked is None:
        raise InputError(
            f"rotation {rid} of {rotation.user}'s {noun} is under way: name the leaked one "
            "with --credential-id"
        )
    if rotation.state.finished:
        raise Refused(f"rotation {rid} is {rotation.state} now; see `rotator history`")
    if leaked == rotation.new_credential_id and rotation.emergency:
        # Its old credential leaked too: a rollback would bring that one back.
        raise Refused(
            f"{leaked} is the new {noun} of emergency rotation {rid}, which still holds the "
            f"leaked {rotation.old_credential_id}: finish it first (rotate "
            f"{rotation.old_credential_id} with --emergency --hold 0s), then rotate {leaked}"
        )
    if leaked == rotation.new_credential_id:
        raise Refused(
            f"{leaked} is the new {noun} of rotation {rid}, still under way: roll it back "
            f"(`rotator rollback {rid}`), then rotate {leaked} again"
        )
    if leaked != rotation.old_credential_id:
        which = f" {rotation.old_credential_id}" if rotation.old_credential_id else ""
        raise Refused(
            f"rotation {rid} of {rotation.user}'s {noun}{which} is under way; finish or roll "
            "it back first"
        )
    return rotation.evolve(
        emergency=True,
        deactivate_after=timedelta(0),
        delete_after=request.hold,
        reason=f"emergency: {leaked} reported leaked by an operator while {rotation.state}",
        updated_at=now,
    )
