"""The rotation protocol as data: which step a rotation takes next, and when it is due.

Pure functions over ``Rotation``; the engine performs what they decide. A normal
rotation runs::

    PLANNED/CREATING --create--> CREATED --verify--> VERIFIED --promote--> PROMOTED
        --deactivate (promoted_at + deactivate_after)--> DEACTIVATED
        --delete (deactivated_at + delete_after)--> COMPLETED

A rotation with no old credential to retire is COMPLETED at promotion.

An *emergency* rotation (a leaked credential) deactivates the old credential first, while
still PLANNED, then creates, verifies and promotes the new one; promotion then leads
straight to DEACTIVATED, and the old credential is deleted ``delete_after`` (the hold)
after the promotion. A rotation already under way when its old credential is reported
leaked is *escalated* (``rotator.rotation.emergency.escalate``): it becomes an emergency, and its
next step is that deactivation, whatever step it had reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rotator.model import Rotation, RotationState, Step

# state -> (the step that leaves it, the state that step reaches)
TRANSITIONS: dict[RotationState, tuple[Step, RotationState]] = {
    RotationState.PLANNED: (Step.CREATE, RotationState.CREATED),
    RotationState.CREATING: (Step.CREATE, RotationState.CREATED),
    RotationState.CREATED: (Step.VERIFY, RotationState.VERIFIED),
    RotationState.VERIFIED: (Step.PROMOTE, RotationState.PROMOTED),
    RotationState.PROMOTED: (Step.DEACTIVATE, RotationState.DEACTIVATED),
    RotationState.DEACTIVATED: (Step.DELETE, RotationState.COMPLETED),
}


@dataclass(frozen=True, kw_only=True)
class Due:
    """The next step of a rotation and the earliest time it may run."""

    step: Step
    at: datetime

    def ready(self, now: datetime) -> bool:
        return self.at <= now


def next_step(rotation: Rotation) -> Due | None:
    """The step a rotation takes next and when, or None if it is finished."""
    if rotation.state.finished:
        return None
    if emergency_deactivation_due(rotation):
        return Due(step=Step.DEACTIVATE, at=rotation.created_at)
    step, _ = TRANSITIONS[rotation.state]
    if step is Step.DEACTIVATE:
        assert rotation.promoted_at is not None
        return Due(step=step, at=rotation.promoted_at + rotation.deactivate_after)
    if step is Step.DELETE:
        assert rotation.deactivated_at is not None
        since = rotation.deactivated_at
        if rotation.emergency and rotation.promoted_at is not None:
            since = max(since, rotation.promoted_at)  # the hold runs from the promotion
        return Due(step=step, at=since + rotation.delete_after)
    return Due(step=step, at=rotation.updated_at)


def emergency_deactivation_due(rotation: Rotation) -> bool:
    """True if an emergency rotation has yet to deactivate the leaked credential. That is
    its first step; a rotation escalated to an emergency part-way (``escalate``) takes it
    next, whatever step it had reached."""
    return (
        rotation.emergency
        and rotation.state in _BEFORE_DEACTIVATION
        and rotation.old_credential_id is not None
        and rotation.deactivated_at is None
    )


_BEFORE_DEACTIVATION = frozenset(
    {
        RotationState.PLANNED,
        RotationState.CREATING,
        RotationState.CREATED,
        RotationState.VERIFIED,
        RotationState.PROMOTED,
    }
)


def state_after_promote(rotation: Rotation) -> RotationState:
    """Where promotion leads: COMPLETED if there is nothing old to retire, DEACTIVATED if
    the old credential was deactivated first (emergency), else PROMOTED."""
    if rotation.old_credential_id is None:
        return RotationState.COMPLETED
    if rotation.deactivated_at is not None:
        return RotationState.DEACTIVATED
    return RotationState.PROMOTED
