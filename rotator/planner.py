"""Pure planning: ``plan(inventory, rules, rotations, now) -> Plan``.

Every decision carries a reason an operator can act on. The planner never awaits and
never calls AWS; the engine performs what it decides. Guarantees (tested with hypothesis):

* a ROTATE never takes a holder past IAM's limit for the kind: if the holder is at the
  limit, the ROTATE names an *inactive* credential to delete first;
* nothing the planner asks to delete is active;
* a holder with more than one active credential of the kind is BLOCKED, never guessed;
* one decision per (holder, kind, slot), and one rotation in flight per target.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial

from rotator.model import Action, Credential, Decision, Holder, Inventory, Kind, Plan, Rotation
from rotator.policy import Rule, format_duration
from rotator.protocol import next_step

# How many credentials of a kind IAM lets one user hold (per slot).
LIMITS: dict[Kind, int] = {
    Kind.ACCESS_KEY: 2,
    Kind.SIGNING_CERTIFICATE: 2,
    Kind.SSH_PUBLIC_KEY: 5,
    Kind.SERVICE_CREDENTIAL: 2,
}

NOUNS: dict[Kind, str] = {
    Kind.ACCESS_KEY: "access key",
    Kind.SIGNING_CERTIFICATE: "signing certificate",
    Kind.SERVER_CERTIFICATE: "server certificate",
    Kind.LOGIN_PROFILE: "console password",
    Kind.SSH_PUBLIC_KEY: "SSH public key",
    Kind.SERVICE_CREDENTIAL: "service credential",
}


def _age(delta: timedelta) -> str:
    """A human age: ``120d``, ``5h``, ``3m``, ``0s``."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def plan(
    inventory: Inventory,
    rules: Sequence[Rule],
    rotations: Iterable[Rotation],
    now: datetime,
) -> Plan:
    """Decide, for every credential the rules select, what to do now and why."""
    in_flight = {r.target: r for r in rotations if not r.state.finished}
    decisions: list[Decision] = [_in_flight(r, rules, now) for r in in_flight.values()]
    covered = set(in_flight)
    for holder in inventory.holders:
        for rule in rules:
            decision = _decide(holder, rule, covered, now)
            if decision is not None:
                covered.add((holder.account, holder.name, rule.kind, decision.slot))
                decisions.append(decision)
    return Plan(decisions=tuple(decisions), made_at=now)


def _in_flight(rotation: Rotation, rules: Sequence[Rule], now: datetime) -> Decision:
    due = next_step(rotation)
    assert due is not None
    make = partial(
        Decision,
        account=rotation.account,
        user=rotation.user,
        kind=rotation.kind,
        slot=rotation.slot,
        rule=rotation.rule,
        credential_id=rotation.old_credential_id,
        rotation_id=rotation.rotation_id,
        due_at=due.at,
    )
    if not rotation.emergency and not any(r.name == rotation.rule for r in rules):
        return make(
            action=Action.BLOCK,
            reason=f"rule {rotation.rule!r} that started this rotation is no longer in the "
            f"policy; restore it or roll the rotation back (next step: {due.step})",
        )
    if due.ready(now):
        reason = f"rotation {rotation.rotation_id} in state {rotation.state}: {due.step} is due"
        if rotation.held_since is not None:
            reason += f" (held since {rotation.held_since:%Y-%m-%d %H:%M}Z: {rotation.reason})"
        return make(action=Action.ADVANCE, reason=reason)
    return make(
        action=Action.WAIT,
        reason=f"rotation {rotation.rotation_id} in state {rotation.state}: {due.step} is due "
        f"at {due.at:%Y-%m-%d %H:%M}Z (in {_age(due.at - now)})",
    )


def _decide(
    holder: Holder, rule: Rule, covered: set[tuple[str, str, Kind, str]], now: datetime
) -> Decision | None:
    if not rule.selects(holder.name, holder.path, holder.tags):
        return None
    if (holder.account, holder.name, rule.kind, "") in covered:
        return None  # an earlier rule (or a rotation in flight) already decided
    excluded = rule.exclude.reason(holder.name, holder.tags)
    if excluded is not None:
        return Decision(
            account=holder.account,
            user=holder.name,
            kind=rule.kind,
            rule=rule.name,
            action=Action.EXCLUDE,
            reason=excluded,
        )
    return _two_slot(holder, rule, now)


def _two_slot(holder: Holder, rule: Rule, now: datetime, slot: str = "") -> Decision:
    kind = rule.kind
    noun = NOUNS[kind]
    creds = holder.of_kind(kind, slot)
    active = [c for c in creds if c.active]
    inactive = [c for c in creds if not c.active]
    make = partial(
        Decision, account=holder.account, user=holder.name, kind=kind, rule=rule.name, slot=slot
    )
    if not active:
        detail = f" ({len(inactive)} inactive)" if inactive else ""
        return make(action=Action.SKIP, reason=f"no active {noun}{detail}")
    if len(active) > 1:
        ids = ", ".join(c.credential_id for c in active)
        return make(
            action=Action.BLOCK,
            credential_id=active[-1].credential_id,
            reason=f"{len(active)} active {noun}s ({ids}): rotator cannot tell which one is in "
            f"use; deactivate the unused one (or rotate it with --emergency)",
        )
    current = active[0]
    due_at = current.created + rule.max_age
    age = _age(current.age(now))
    if due_at > now:
        return make(
            action=Action.SKIP,
            credential_id=current.credential_id,
            due_at=due_at,
            reason=f"{noun} {current.credential_id} is {age} old; due in "
            f"{_age(due_at - now)} (max_age {format_duration(rule.max_age)})",
        )
    reason = (
        f"{noun} {current.credential_id} is {age} old (max_age {format_duration(rule.max_age)})"
    )
    delete_first = _make_room(creds, LIMITS.get(kind, 1))
    if delete_first is not None:
        reason += f"; inactive {noun} {delete_first.credential_id} is deleted first to make room"
    return make(
        action=Action.ROTATE,
        credential_id=current.credential_id,
        delete_first=delete_first.credential_id if delete_first else None,
        due_at=due_at,
        reason=reason,
    )


def _make_room(creds: Sequence[Credential], limit: int) -> Credential | None:
    """The oldest inactive credential, if the holder is at the limit (else None)."""
    if len(creds) < limit:
        return None
    return next((c for c in creds if not c.active), None)
