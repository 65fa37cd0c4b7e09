"""Pure planning: ``plan(inventory, rules, rotations, now) -> Plan``.

Every decision carries a reason an operator can act on. The planner never awaits and
never calls AWS; the engine performs what it decides. What it knows of a kind (shape,
limit, noun, account-held) it reads from the rule, ``rule.facts``, which the kind's module
declares; it imports no kind. Guarantees (tested with hypothesis):

* a ROTATE never takes a holder past IAM's limit for the kind: if the holder is at the
  limit, the ROTATE names an *inactive* credential to delete first;
* nothing the planner asks to delete is active;
* a holder with more than one active credential of the kind is BLOCKED, never guessed;
* one decision per (holder, kind, slot), and one rotation in flight per target.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import partial

from rotator.errors import RuleGone
from rotator.model import (
    Action,
    Credential,
    Decision,
    Holder,
    Inventory,
    Kind,
    Plan,
    Rotation,
    Shape,
    Status,
)
from rotator.policy import Rule, format_age, format_duration
from rotator.rotation.protocol import next_step


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
                covered.add((holder.account, holder.name, rule.kind, rule.slot))
                decisions.append(decision)
    return Plan(decisions=tuple(decisions))


def _in_flight(rotation: Rotation, rules: Sequence[Rule], now: datetime) -> Decision:
    due = next_step(rotation)
    if due is None:  # cannot be: finished rotations are not in flight
        raise ValueError(f"rotation {rotation.rotation_id} is {rotation.state}: not in flight")
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
    if not any(r.name == rotation.rule for r in rules):
        gone = RuleGone(rotation.rotation_id, rotation.rule, emergency=rotation.emergency)
        return make(action=Action.BLOCK, reason=f"{gone} (next step: {due.step})")
    if due.ready(now):
        reason = f"rotation {rotation.rotation_id} in state {rotation.state}: {due.step} is due"
        if rotation.held_since is not None:
            reason += f" (held since {rotation.held_since:%Y-%m-%d %H:%M}Z: {rotation.reason})"
        return make(action=Action.ADVANCE, reason=reason)
    return make(
        action=Action.WAIT,
        reason=f"rotation {rotation.rotation_id} in state {rotation.state}: {due.step} is due "
        f"at {due.at:%Y-%m-%d %H:%M}Z (in {format_age(due.at - now)})",
    )


def _decide(
    holder: Holder, rule: Rule, covered: set[tuple[str, str, Kind, str]], now: datetime
) -> Decision | None:
    if holder.account_held != rule.facts.account_held:
        return None  # a server-certificate rule never selects a user, nor the reverse
    if not rule.selects(holder.name, holder.path, holder.tags):
        return None
    if (holder.account, holder.name, rule.kind, rule.slot) in covered:
        return None  # an earlier rule (or a rotation in flight) already decided
    make = partial(
        Decision,
        account=holder.account,
        user=holder.name,
        kind=rule.kind,
        rule=rule.name,
        slot=rule.slot,
    )
    excluded = rule.exclude.reason(holder.name, holder.tags)
    if excluded is not None:
        return make(action=Action.EXCLUDE, reason=excluded)
    creds = holder.of_kind(rule.kind, rule.slot)
    unused = _expired(creds, rule) or _unused(creds, rule, now)
    if unused is not None:
        cred, reason = unused
        return make(action=Action.DISABLE, credential_id=cred.credential_id, reason=reason)
    shape = rule.facts.shape
    if shape is Shape.IN_PLACE:
        return _in_place(make, creds, rule, now)
    if shape is Shape.VERSIONED:
        return _versioned(make, creds, rule, now, holder)
    return _two_slot(make, creds, rule, now)


def _expired(creds: Sequence[Credential], rule: Rule) -> tuple[Credential, str] | None:
    """The first credential IAM lists as Expired, with the reason, if the rule cleans them
    up (``delete_expired``); None otherwise."""
    if not rule.cleans_expired:
        return None
    for cred in creds:
        if cred.status is Status.EXPIRED:
            when = f" on {cred.expires:%Y-%m-%d}" if cred.expires else ""
            return cred, (f"{rule.facts.noun} {cred.credential_id} expired{when} (delete_expired)")
    return None


def _unused(
    creds: Sequence[Credential], rule: Rule, now: datetime
) -> tuple[Credential, str] | None:
    """The first active credential unused for ``rule.unused_after`` (or never used and
    older than that), with the reason; None if the rule does not ask or all are in use."""
    limit = rule.unused_after
    if limit is None:
        return None
    noun = rule.facts.noun
    for cred in creds:
        if not cred.active:
            continue
        since = cred.last_used or cred.created
        if now - since >= limit:
            used = f"last used {cred.last_used:%Y-%m-%d}" if cred.last_used else "never used"
            return cred, (
                f"{noun} {cred.credential_id} {used}, {format_age(now - since)} ago "
                f"(disable_unused_after {format_duration(limit)})"
            )
    return None


def _due(cred: Credential, rule: Rule, now: datetime) -> tuple[datetime | None, str]:
    """When ``cred`` falls due under ``rule`` (None: never) and why, for the reason text."""
    noun = rule.facts.noun
    options: list[tuple[datetime, str]] = []
    if rule.max_age is not None:
        options.append(
            (
                cred.created + rule.max_age,
                f"{noun} {cred.credential_id} is {format_age(cred.age(now))} old "
                f"(max_age {format_duration(rule.max_age)})",
            )
        )
    start, lead = rule.start_age, rule.deadline_lead
    if start is not None and lead is not None and rule.deadline is not None:
        starts = cred.created + start
        inactive = starts + lead - rule.deadline_margin  # at the latest, all going slowly
        options.append(
            (
                starts,
                f"{noun} {cred.credential_id} is {format_age(cred.age(now))} old (deadline "
                f"{format_duration(rule.deadline)}: rotation starts at "
                f"{format_duration(start)} old, {starts:%Y-%m-%d %H:%M}Z; the old one is "
                f"inactive by {inactive:%Y-%m-%d %H:%M}Z, the deadline is "
                f"{cred.created + rule.deadline:%Y-%m-%d %H:%M}Z)",
            )
        )
    window = rule.renew_window
    if window is not None and cred.expires is not None:
        when = (
            f"expired {format_age(now - cred.expires)} ago ({cred.expires:%Y-%m-%d}"
            if cred.expires <= now
            else f"expires {cred.expires:%Y-%m-%d} (in {format_age(cred.expires - now)}"
        )
        options.append(
            (
                cred.expires - window,
                f"{noun} {cred.credential_id} {when}; renew_before {format_duration(window)})",
            )
        )
    if not options:
        return None, f"{noun} {cred.credential_id}: no max_age or expiry to act on"
    return min(options)


def _rotate_or_skip(
    make: partial[Decision],
    cred: Credential,
    rule: Rule,
    now: datetime,
    *,
    extra: str = "",
    delete_first: Credential | None = None,
) -> Decision:
    due_at, why = _due(cred, rule, now)
    if due_at is None or due_at > now:
        when = f"; due in {format_age(due_at - now)}" if due_at else ""
        return make(
            action=Action.SKIP,
            credential_id=cred.credential_id,
            due_at=due_at,
            reason=f"{why}{when}",
        )
    if delete_first is not None:
        noun = rule.facts.noun
        extra += f"; inactive {noun} {delete_first.credential_id} is deleted first to make room"
    return make(
        action=Action.ROTATE,
        credential_id=cred.credential_id,
        delete_first=delete_first.credential_id if delete_first else None,
        due_at=due_at,
        reason=why + extra,
    )


def _two_slot(
    make: partial[Decision], creds: Sequence[Credential], rule: Rule, now: datetime
) -> Decision:
    noun = rule.facts.noun
    active = [c for c in creds if c.active]
    inactive = [c for c in creds if not c.active]
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
    room = _make_room(creds, rule.facts.limit or 1)
    return _rotate_or_skip(make, active[0], rule, now, delete_first=room)


def _in_place(
    make: partial[Decision], creds: Sequence[Credential], rule: Rule, now: datetime
) -> Decision:
    if not creds:
        return make(action=Action.SKIP, reason=f"no {rule.facts.noun}")
    return _rotate_or_skip(make, creds[-1], rule, now)


def _versioned(
    make: partial[Decision],
    creds: Sequence[Credential],
    rule: Rule,
    now: datetime,
    holder: Holder,
) -> Decision:
    if not creds:
        return make(action=Action.SKIP, reason=f"no {rule.facts.noun}")
    # The kind marks the version in service Active; failing that, the latest issued.
    active = [c for c in creds if c.active]
    current = (
        active[-1]
        if len(active) == 1
        else max(creds, key=lambda c: (c.not_before or c.created, c.credential_id))
    )
    finding = holder.finding
    if finding is not None:  # the kind judged from what it saw outside IAM
        return make(
            action=finding.action,
            credential_id=current.credential_id,
            due_at=now if finding.action is Action.ROTATE else None,
            reason=finding.reason,
        )
    offered = holder.offered
    held = current.not_before or current.created
    if offered is not None and offered > held:
        return make(
            action=Action.ROTATE,
            credential_id=current.credential_id,
            due_at=now,
            reason=f"the issuer has a newer certificate (issued {offered:%Y-%m-%d}) than "
            f"{current.credential_id} (issued {held:%Y-%m-%d})",
        )
    decision = _rotate_or_skip(make, current, rule, now)
    if offered is not None and decision.action is Action.ROTATE:
        return make(  # a directory issuer can only hand over what the ACME client left
            action=Action.BLOCK,
            credential_id=current.credential_id,
            due_at=decision.due_at,
            reason=f"{decision.reason}, but the issuer's certificate (issued "
            f"{offered:%Y-%m-%d}) is not newer than IAM's: renew it with the ACME client",
        )
    return decision


def _make_room(creds: Sequence[Credential], limit: int) -> Credential | None:
    """The oldest inactive credential, if the holder is at the limit (else None)."""
    if len(creds) < limit:
        return None
    return next((c for c in creds if not c.active), None)
