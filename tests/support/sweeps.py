"""Build ``SweepResult``s by hand for the metrics and notification tests: real domain
objects (decisions, rotations, step results), no mocks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from rotator.model import Action, Decision, Kind, Outcome, Plan, Rotation, RotationState, Step
from rotator.rotation.report import Report, Result, SweepResult
from rotator.rotation.steps import StepResult

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
FULL = (Step.CREATE, Step.VERIFY, Step.PROMOTE, Step.DEACTIVATE, Step.DELETE)
_AFTER = {
    Step.CREATE: RotationState.CREATED,
    Step.VERIFY: RotationState.VERIFIED,
    Step.PROMOTE: RotationState.PROMOTED,
    Step.DEACTIVATE: RotationState.DEACTIVATED,
    Step.DELETE: RotationState.COMPLETED,
}


def old_id(user: str) -> str:
    return f"AKIAOLD{user.upper().replace('-', '')}"[:20]


def new_id(user: str) -> str:
    return f"AKIANEW{user.upper().replace('-', '')}"[:20]


def decision(
    user: str, action: Action, *, kind: Kind = Kind.ACCESS_KEY, reason: str = "because"
) -> Decision:
    return Decision(
        account=ACCOUNT,
        user=user,
        kind=kind,
        rule="ci-keys",
        action=action,
        reason=reason,
        credential_id=old_id(user),
    )


def rotated(
    user: str,
    steps: Sequence[Step] = FULL,
    *,
    last: Outcome = Outcome.DONE,
    reason: str = "",
    action: Action = Action.ROTATE,
    kind: Kind = Kind.ACCESS_KEY,
) -> Report:
    """A report of a rotation that ran ``steps``, all done but the last (``last``)."""
    rotation = Rotation.start(
        account=ACCOUNT,
        user=user,
        kind=kind,
        rule="ci-keys",
        now=NOW,
        old_credential_id=old_id(user),
    ).evolve(new_credential_id=new_id(user))
    done: list[StepResult] = []
    for i, step in enumerate(steps):
        outcome = last if i == len(steps) - 1 else Outcome.DONE
        if outcome is Outcome.DONE:
            rotation = rotation.evolve(state=_AFTER[step])
        done.append(
            StepResult(
                rotation=rotation,
                step=step,
                outcome=outcome,
                reason=reason if outcome is not Outcome.DONE else "",
            )
        )
    began = action is Action.ROTATE
    return Report.of(decision(user, action, kind=kind), rotation, done, began=began)


def plain(
    user: str,
    action: Action,
    result: Result,
    reason: str = "why",
    kind: Kind = Kind.ACCESS_KEY,
) -> Report:
    """A report without steps (blocked, skipped, disabled ...)."""
    return Report(
        decision=decision(user, action, kind=kind, reason=reason), result=result, reason=reason
    )


def sweep(*reports: Report, seconds: float = 2.0) -> SweepResult:
    return SweepResult(
        run_id="run-test",
        account=ACCOUNT,
        dry_run=False,
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=seconds),
        plan=Plan(decisions=tuple(r.decision for r in reports)),
        reports=tuple(reports),
    )
