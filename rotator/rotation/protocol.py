"""The rotation protocol as data: which step a rotation takes next, when it is due, and
which states that step may leave it in.

``TABLE`` is authoritative: ``next_step`` reads it, the steps may journal only the states
their row allows (``Steps`` checks every write), and the driver refuses a step that reports
any other state. A normal rotation runs::

    PLANNED/CREATING --create--> CREATED --verify--> VERIFIED --promote--> PROMOTED
        --deactivate (promoted_at + deactivate_after)--> DEACTIVATED
        --delete (deactivated_at + delete_after)--> COMPLETED

A rotation with no old credential to retire is COMPLETED at promotion.

An *emergency* rotation (a leaked credential) takes the first row: it deactivates the old
credential first, whatever state it is in (PLANNED for a new emergency; any state up to
PROMOTED for a rotation *escalated* part-way, see ``rotator.rotation.emergency.escalate``),
then goes on from where it was; promotion then leads straight to DEACTIVATED, and the old
credential is deleted ``delete_after`` (the hold) after the promotion.

Any step may end a rotation FAILED (a permanent error; the driver journals it). An
operator's rollback is the last row: it is never *due*, only asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rotator.model import Rotation, RotationState, Step

S = RotationState

_BEFORE_DEACTIVATION = frozenset({S.PLANNED, S.CREATING, S.CREATED, S.VERIFIED, S.PROMOTED})


@dataclass(frozen=True, kw_only=True)
class Transition:
    """One row of the protocol: ``step`` leaves any of ``leaves`` when ``applies`` holds,
    is due at ``due``, and may leave the rotation in one of ``reaches`` (or FAILED).
    ``succeeds`` is the record once the step has done its work at a given moment (the
    path a dry run previews, ``rotator.rotation.preview``); it lands in ``reaches``."""

    name: str
    step: Step
    leaves: frozenset[RotationState]
    reaches: frozenset[RotationState]
    applies: Callable[[Rotation], bool] = lambda _r: True
    due: Callable[[Rotation], datetime] = lambda r: r.updated_at
    succeeds: Callable[[Rotation, datetime], Rotation] = lambda r, at: r.evolve(updated_at=at)

    def allows(self, state: RotationState) -> bool:
        """Whether this step may leave a rotation in ``state``."""
        return state in self.reaches or state is S.FAILED


def _leaked_still_active(rotation: Rotation) -> bool:
    return (
        rotation.emergency
        and rotation.old_credential_id is not None
        and rotation.deactivated_at is None
    )


def _deactivate_due(rotation: Rotation) -> datetime:
    if rotation.promoted_at is None:  # cannot be: PROMOTED is journalled with promoted_at
        raise ValueError(f"rotation {rotation.rotation_id} is promoted without promoted_at")
    return rotation.promoted_at + rotation.deactivate_after


def _delete_due(rotation: Rotation) -> datetime:
    since = rotation.deactivated_at or rotation.updated_at
    if rotation.emergency and rotation.promoted_at is not None:
        since = max(since, rotation.promoted_at)  # the hold runs from the promotion
    return since + rotation.delete_after


def _moved(
    state: RotationState, stamp: str | None = None
) -> Callable[[Rotation, datetime], Rotation]:
    """A row's success: the rotation in ``state``, its field ``stamp`` set to the moment
    (and ``finished_at`` when ``state`` is finished)."""

    def succeeds(rotation: Rotation, at: datetime) -> Rotation:
        stamps = {stamp: at} if stamp else {}
        if state.finished:
            stamps["finished_at"] = at
        return rotation.evolve(state=state, updated_at=at, **stamps)

    return succeeds


def _leaked_deactivated(rotation: Rotation, at: datetime) -> Rotation:
    state = S.DEACTIVATED if rotation.state is S.PROMOTED else rotation.state
    return rotation.evolve(state=state, deactivated_at=at, updated_at=at)


def _promoted(rotation: Rotation, at: datetime) -> Rotation:
    return _moved(state_after_promote(rotation), "promoted_at")(rotation, at)


EMERGENCY_DEACTIVATE = Transition(
    name="emergency-deactivate",
    step=Step.DEACTIVATE,
    leaves=_BEFORE_DEACTIVATION,
    # The rotation stays where it was (now with deactivated_at), except that a promoted
    # one has nothing left but the deletion.
    reaches=frozenset({S.PLANNED, S.CREATING, S.CREATED, S.VERIFIED, S.DEACTIVATED}),
    applies=_leaked_still_active,
    due=lambda r: r.created_at,
    succeeds=_leaked_deactivated,
)
CREATE = Transition(
    name="create",
    step=Step.CREATE,
    leaves=frozenset({S.PLANNED, S.CREATING}),
    reaches=frozenset({S.CREATING, S.CREATED}),
    succeeds=_moved(S.CREATED, "creating_at"),
)
VERIFY = Transition(
    name="verify",
    step=Step.VERIFY,
    leaves=frozenset({S.CREATED}),
    reaches=frozenset({S.CREATED, S.VERIFIED}),
    succeeds=_moved(S.VERIFIED),
)
PROMOTE = Transition(
    name="promote",
    step=Step.PROMOTE,
    leaves=frozenset({S.VERIFIED}),
    reaches=frozenset({S.PROMOTED, S.DEACTIVATED, S.COMPLETED}),
    succeeds=_promoted,
)
DEACTIVATE = Transition(
    name="deactivate",
    step=Step.DEACTIVATE,
    leaves=frozenset({S.PROMOTED}),
    reaches=frozenset({S.PROMOTED, S.DEACTIVATED, S.COMPLETED}),
    due=_deactivate_due,
    succeeds=_moved(S.DEACTIVATED, "deactivated_at"),
)
DELETE = Transition(
    name="delete",
    step=Step.DELETE,
    leaves=frozenset({S.DEACTIVATED}),
    reaches=frozenset({S.DEACTIVATED, S.COMPLETED}),
    due=_delete_due,
    succeeds=_moved(S.COMPLETED),
)
ROLLBACK = Transition(
    name="rollback",
    step=Step.ROLLBACK,
    # Any rotation that promoted a new credential (checked by the rollback itself).
    leaves=frozenset({S.PROMOTED, S.DEACTIVATED, S.COMPLETED, S.FAILED, S.ROLLED_BACK}),
    reaches=frozenset({S.ROLLED_BACK}),
)

# In order: the first row that leaves a rotation's state and applies is its next step.
TABLE: tuple[Transition, ...] = (EMERGENCY_DEACTIVATE, CREATE, VERIFY, PROMOTE, DEACTIVATE, DELETE)


@dataclass(frozen=True, kw_only=True)
class Due:
    """The next step of a rotation, the row it follows, and the earliest time it may run."""

    transition: Transition
    at: datetime

    @property
    def step(self) -> Step:
        return self.transition.step

    def ready(self, now: datetime) -> bool:
        return self.at <= now


def transition(rotation: Rotation) -> Transition | None:
    """The row a rotation follows next, or None if it is finished."""
    if rotation.state.finished:
        return None
    for row in TABLE:
        if rotation.state in row.leaves and row.applies(rotation):
            return row
    return None


def next_step(rotation: Rotation) -> Due | None:
    """The step a rotation takes next and when, or None if it is finished."""
    row = transition(rotation)
    return None if row is None else Due(transition=row, at=row.due(rotation))


def state_after_promote(rotation: Rotation) -> RotationState:
    """Where promotion leads: COMPLETED if there is nothing old to retire, DEACTIVATED if
    the old credential was deactivated first (emergency), else PROMOTED."""
    if rotation.old_credential_id is None:
        return RotationState.COMPLETED
    if rotation.deactivated_at is not None:
        return RotationState.DEACTIVATED
    return RotationState.PROMOTED
