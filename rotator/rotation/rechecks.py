"""Does a decision still hold? A plan is made from an inventory read at the start of the
sweep; before acting on it the engine looks again, so that two sweeps at once (two
replicas, a daemon and an operator) never rotate the same credential twice nor report a
user blocked while another worker's rotation is merely half-way."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta

from rotator.journal.base import Journal, TargetState
from rotator.kinds import facts_of
from rotator.model import Credential, Decision, Holder, Shape
from rotator.rotation.session import Session

# A rotation whose last write is older than the sweep's start by this much finished before
# the inventory listed anything, whatever its writer's clock said: every worker signs AWS
# requests, and AWS refuses a signature from a clock more than 5 minutes off.
SETTLED = timedelta(hours=1)
# How long after it was sent the inventory's listing may stand in for a re-check's. The
# journal shows every change rotator makes; a re-check also narrows the window for a
# change made outside rotator (a person in the console), which this bounds.
SEEN_FRESH = 60.0


def inventory_view(
    decision: Decision, holder: Holder | None, target: TargetState, sweep: Session
) -> tuple[Credential, ...] | None:
    """What the sweep's inventory listed for a ROTATE decision's holder, if it still
    shows IAM as every rotator left it (else None: list again).

    It does when the target's journal state, read after the listing, shows no rotation
    unfinished and none written since a moment before the sweep began (``SETTLED``):
    every change a rotation makes in IAM comes before a write of its record, so none
    changed the holder's credentials after they were listed. A rotation journalled after
    that read moves the target's fence, and the journal then refuses this one's (``add``'s
    ``expect_fence``). Only for two-slot kinds, whose listing the inventory keeps as IAM
    gave it (a console password's age is corrected from the sink), and only a listing
    made per user, not taken from the credential report, less than ``SEEN_FRESH`` ago."""
    kind, slot = decision.kind, decision.slot
    if holder is None or holder.listed_at is None or (kind, slot) not in holder.listed:
        return None
    if facts_of(kind).shape is not Shape.TWO_SLOT or target.busy:
        return None
    if target.changed_at is not None and target.changed_at >= sweep.started_at - SETTLED:
        return None
    if time.monotonic() - holder.listed_at > SEEN_FRESH:
        return None
    return holder.of_kind(kind, slot)


async def changed_since_plan(
    decision: Decision,
    sweep: Session,
    journal: Journal,
    seen: Sequence[Credential] | None = None,
) -> tuple[str | None, list[Credential]]:
    """Why a ROTATE decision no longer holds (another worker got there first), or None;
    and what IAM holds for the holder now (the rotation's first step starts from it).
    ``seen``: the inventory's listing, when it still holds (``inventory_view``); else
    IAM is asked again."""
    if seen is not None:
        listed = list(seen)
    else:
        listed = await sweep.kinds[decision.kind].list(decision.user, decision.slot)
    stale = _stale(decision, sweep, listed) or await _rotated_in_place(decision, sweep, journal)
    return stale, listed


def _stale(decision: Decision, sweep: Session, listed: list[Credential]) -> str | None:
    active = [c for c in listed if c.active]
    planned = next((c for c in active if c.credential_id == decision.credential_id), None)
    shape = facts_of(decision.kind).shape
    two_slot = shape is Shape.TWO_SLOT
    if planned is None or (two_slot and len(active) != 1):
        now_active = ", ".join(c.credential_id for c in active) or "none"
        return f"skipped: credentials changed since planning (active now: {now_active})"
    newest = max(listed, key=lambda c: c.created)
    if newest.created >= sweep.started_at:
        return f"skipped: {newest.credential_id} was created during this sweep"
    return None


async def _rotated_in_place(decision: Decision, sweep: Session, journal: Journal) -> str | None:
    if facts_of(decision.kind).shape is Shape.IN_PLACE:  # IAM's dates do not show the change
        target = (decision.account, decision.user, decision.kind, decision.slot)
        for done in await journal.list_rotations(user=decision.user, limit=20):
            if done.target == target and done.created_at >= sweep.started_at:
                return f"skipped: rotation {done.rotation_id} changed it during this sweep"
    return None


async def still_blocked(decision: Decision, sweep: Session, journal: Journal) -> str | None:
    """Confirm a two-active-credentials block (None), or say why it no longer holds:
    another worker's rotation is between its create and its deactivate, or finished.

    Keys are listed, then the journal read, then keys listed again: a rotation that
    created the second key is journalled before the key exists, and one that finished in
    between has deleted a key by the second listing."""
    kind = sweep.kinds[decision.kind]
    target = (decision.account, decision.user, decision.kind, decision.slot)

    async def active_count() -> int:
        return sum(c.active for c in await kind.list(decision.user, decision.slot))

    if await active_count() > 1:
        busy = [r for r in await journal.list_active() if r.target == target]
        if busy:
            return f"skipped: rotation {busy[0].rotation_id} by another worker is in flight"
        if await active_count() > 1:
            return None
    return "skipped: credentials changed since planning"


async def late_orphan(
    decision: Decision, sweep: Session, journal: Journal, lease_ttl: timedelta
) -> Credential | None:
    """The credential a late create left behind, if the two active credentials of a
    blocked decision are one that rotator made and one nobody knows of: a worker paused
    mid-create (or whose answer was lost after its lease ran out) can have its create
    applied after another worker finished the rotation. Its secret never reached any sink.

    It is recognised, never guessed: no rotation of the target is unfinished; the other
    active credential is a rotation's new one; this one is referenced by no rotation (not
    old, new, known or made room for) and was created while one of them was creating, or
    within a lease period after it finished (a lease period either side, for clock skew).
    """
    target = (decision.account, decision.user, decision.kind, decision.slot)
    rotations = [
        r for r in await journal.list_rotations(user=decision.user, limit=50) if r.target == target
    ]
    if not rotations or any(not r.state.finished for r in rotations):
        return None
    known: set[str | None] = set()
    for r in rotations:
        known |= {r.old_credential_id, r.new_credential_id, r.delete_first, *r.known_ids}
    made = {r.new_credential_id for r in rotations if r.new_credential_id}
    listed = await sweep.kinds[decision.kind].list(decision.user, decision.slot)
    active = [c for c in listed if c.active]
    unknown = [c for c in active if c.credential_id not in known]
    if len(active) != 2 or len(unknown) != 1 or not any(c.credential_id in made for c in active):
        return None
    (orphan,) = unknown
    for r in rotations:
        if r.creating_at is None or r.finished_at is None:
            continue
        if r.creating_at - lease_ttl <= orphan.created <= r.finished_at + 2 * lease_ttl:
            return orphan
    return None
