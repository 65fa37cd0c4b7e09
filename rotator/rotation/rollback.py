"""Rolling a rotation back, on an operator's request (``rotator rollback``): the old
credential is reactivated while it still exists and the sink's previous secret becomes
current again. It is the protocol's ``ROLLBACK`` row: never due, only asked for.

The sink is optional: a rotation whose rule was removed from the policy can still be rolled
back in IAM (the old credential comes back); rotator then cannot know the sink, and says
so. An emergency rotation is never rolled back: its old credential was reported leaked.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rotator.errors import Refused
from rotator.journal.base import Journal
from rotator.kinds.base import CredentialKind
from rotator.model import Outcome, Rotation, RotationState, Status, Step
from rotator.rotation.protocol import ROLLBACK
from rotator.rotation.steps import StepResult, fence_of, sink_key
from rotator.sinks.base import SecretSink


async def roll_back(
    rotation: Rotation,
    *,
    journal: Journal,
    kind: CredentialKind,
    sink: SecretSink | None,
    clock: Callable[[], datetime],
) -> StepResult:
    """Reactivate the old credential while it exists and make the sink's previous secret
    current again (``sink`` None: the rule is gone, only IAM is rolled back). The new
    credential stays active: consumers may already use it. Raises ``Refused`` if there is
    nothing (left) to roll back to, or the rotation was an emergency."""
    rid = rotation.rotation_id
    if rotation.state is RotationState.ROLLED_BACK:
        return _result(rotation, Outcome.ALREADY_DONE, "")
    old_id = rotation.old_credential_id
    if rotation.emergency:
        raise Refused(
            f"rotation {rid} is an emergency rotation: its old credential {old_id} was "
            "reported leaked, and a rollback would reactivate it"
        )
    if rotation.promoted_at is None or old_id is None or rotation.state not in ROLLBACK.leaves:
        raise Refused(
            f"rotation {rid} ({rotation.state}) never promoted a new credential: consumers "
            "still use the old one; nothing to roll back"
        )
    listed = await kind.list(rotation.user, rotation.slot)
    old = next((c for c in listed if c.credential_id == old_id), None)
    if old is None:
        raise Refused(
            f"the old credential {old_id} of rotation {rid} is deleted: rollback is no "
            "longer possible"
        )
    if not old.active:
        await kind.set_status(rotation.user, old_id, Status.ACTIVE)
    note = await _restore_sink(rotation, old_id, sink, journal)
    note += f"; {rotation.new_credential_id} stays active until you deactivate it"
    now = clock()
    rotation = await journal.save(
        rotation.evolve(
            state=RotationState.ROLLED_BACK,
            finished_at=now,
            updated_at=now,
            held_since=None,
            reason="rolled back by an operator",
        )
    )
    return _result(rotation, Outcome.DONE, note)


async def _restore_sink(
    rotation: Rotation, old_id: str, sink: SecretSink | None, journal: Journal
) -> str:
    if sink is None:
        return (
            f"{old_id} is active again; rule {rotation.rule!r} is no longer in the policy, so "
            "rotator cannot tell which sink to restore: the sink's current secret is still "
            f"{rotation.new_credential_id}'s"
        )
    key = sink_key(rotation)
    doc = await sink.read(key)
    if doc.current is not None and doc.current.credential_id == old_id:
        return f"{old_id} is active and already the sink's current secret"
    if doc.previous is not None and doc.previous.credential_id == old_id:
        await sink.rollback(key, old_id, fence_of(journal, rotation))
        return f"{old_id} is active and the sink's current secret again"
    return (
        f"{old_id} is active again; the sink holds no secret for it (it predates rotator), "
        "so consumers that kept it work again"
    )


def _result(rotation: Rotation, outcome: Outcome, reason: str) -> StepResult:
    return StepResult(
        rotation=rotation,
        step=Step.ROLLBACK,
        outcome=outcome,
        reason=reason,
        credential_id=rotation.old_credential_id,
    )
