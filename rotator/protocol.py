"""The rotation protocol as data: which step a rotation takes next, and when it is due.

Pure functions over ``Rotation``; the engine performs what they decide. A normal
rotation runs::

    PLANNED/CREATING --create--> CREATED --verify--> VERIFIED --promote--> PROMOTED
        --deactivate (promoted_at + deactivate_after)--> DEACTIVATED
        --delete (deactivated_at + delete_after)--> COMPLETED

A rotation with no old credential to retire is COMPLETED at promotion.
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
    step, _ = TRANSITIONS[rotation.state]
    if step is Step.DEACTIVATE:
        assert rotation.promoted_at is not None
        return Due(step=step, at=rotation.promoted_at + rotation.deactivate_after)
    if step is Step.DELETE:
        assert rotation.deactivated_at is not None
        return Due(step=step, at=rotation.deactivated_at + rotation.delete_after)
    return Due(step=step, at=rotation.updated_at)


def state_after(step: Step) -> RotationState:
    """The state a rotation reaches when ``step`` succeeds."""
    for state, (leaving, reached) in TRANSITIONS.items():
        if leaving is step and state is not RotationState.CREATING:
            return reached
    raise ValueError(f"no transition for step {step}")


def finished_after_promote(rotation: Rotation) -> bool:
    """True if there is no old credential to retire, so promotion finishes the rotation."""
    return rotation.old_credential_id is None
