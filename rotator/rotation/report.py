"""What a sweep (or an operator's request) did, per decision and in total.

``Result`` is the one vocabulary for what happened to a decision. It is set once, where a
``Report`` is built; the sweep's counts, the CLI's and the Lambda's exit logic, the
daemon's metrics and the notification summary all read that field. Reasons are for people:
no code compares them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from rotator import audit
from rotator.errors import CorruptRecord
from rotator.model import (
    Decision,
    Inventory,
    Outcome,
    Plan,
    Rotation,
    RotationState,
    Step,
    utc_iso,
)
from rotator.rotation.steps import StepResult


class Result(StrEnum):
    """What happened to one decision."""

    ROTATED = "rotated"  # a new credential was made and promoted; the old one retires later
    COMPLETED = "completed"  # a rotation finished (its old credential is gone)
    ADVANCED = "advanced"  # a rotation in flight took its due steps; more are due later
    DISABLED = "disabled"  # a credential unused for too long was taken out of service
    ROLLED_BACK = "rolled-back"  # an operator put the old credential back
    CLEANED = "cleaned"  # a late create's orphan (its secret never stored) was deleted
    HELD = "held"  # not safe yet (old credential still in use); retried next sweep
    BLOCKED = "blocked"  # rotator will not go on without a human; the reason says what to do
    FAILED = "failed"  # a permanent error; the reason carries the error code
    RETRY = "retry"  # a transient error; the next sweep tries again
    WAITING = "waiting"  # another worker holds the rotation's lease (holder, until when)
    DEFERRED = "deferred"  # out of time in this run (a Lambda's budget); the next sweep does it
    STALE = "stale"  # the plan no longer held when acted on: another worker got there first
    NOT_DUE = "not-due"  # a rotation in flight whose next step is due later
    SKIPPED = "skipped"  # nothing to do: not due, or nothing to rotate
    EXCLUDED = "excluded"  # the rule excludes this holder
    WOULD_ROTATE = "would-rotate"  # dry run: a rotation would start
    WOULD_ADVANCE = "would-advance"  # dry run: a rotation in flight would take its due step
    WOULD_DISABLE = "would-disable"  # dry run: an unused credential would be disabled
    WOULD_CLEAN = "would-clean"  # dry run: a late create's orphan would be deleted

    @property
    def ok(self) -> bool:
        """False for results after which a run exits non-zero: something failed, needs a
        human, or must be retried. WAITING is ok: the work is in another live worker's
        hands (a replica, a daemon beside a cron job) and reported with its holder."""
        return self not in _NOT_OK

    @property
    def changed(self) -> bool:
        """True if the decision changed something in IAM or a sink."""
        return self in _CHANGED


_NOT_OK = frozenset({Result.FAILED, Result.BLOCKED, Result.RETRY})
_CHANGED = frozenset(
    {
        Result.ROTATED,
        Result.COMPLETED,
        Result.ADVANCED,
        Result.DISABLED,
        Result.ROLLED_BACK,
        Result.CLEANED,
    }
)
# A step outcome that stops a rotation, and the result it gives the decision.
_STOPPED_BY = {
    Outcome.FAILED: Result.FAILED,
    Outcome.RETRY: Result.RETRY,
    Outcome.HELD: Result.HELD,
    Outcome.BLOCKED: Result.BLOCKED,
}


def driven(rotation: Rotation, done: Sequence[StepResult]) -> Result:
    """The result of driving ``rotation`` through the steps in ``done``."""
    last = done[-1] if done else None
    if last is not None and last.outcome in _STOPPED_BY:
        return _STOPPED_BY[last.outcome]
    if rotation.state is RotationState.COMPLETED:
        return Result.COMPLETED
    if rotation.state is RotationState.ROLLED_BACK:
        return Result.ROLLED_BACK
    if any(s.step is Step.PROMOTE for s in done):
        return Result.ROTATED
    return Result.ADVANCED if done else Result.NOT_DUE


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """What was done about one decision. ``began`` is True if this run journalled a new
    rotation; ``error`` is the AWS (or rotator) error code of a failure, if any;
    ``stalled`` marks a WAITING rotation whose lease looks expired (its holder may be gone:
    the sweep then watches it for a lease period and takes it over if it stays silent).
    In a dry run, ``steps`` are the steps that would run (outcome ``dry-run``,
    ``rotator.rotation.preview``). ``sink`` says where the rotation keeps the new secret
    (``rotator.sinks.where``), when a rotation was driven."""

    decision: Decision
    result: Result
    reason: str
    rotation_id: str | None = None
    state: RotationState | None = None
    steps: tuple[StepResult, ...] = ()
    began: bool = False
    error: str | None = None
    stalled: bool = False
    sink: str | None = None

    @classmethod
    def of(
        cls,
        decision: Decision,
        rotation: Rotation,
        done: Sequence[StepResult],
        *,
        began: bool = False,
        sink: str | None = None,
    ) -> Report:
        """The report of a rotation driven through ``done``, its secrets kept in ``sink``."""
        last = done[-1] if done else None
        return cls(
            decision=decision,
            result=driven(rotation, done),
            rotation_id=rotation.rotation_id,
            state=rotation.state,
            reason=(last.reason if last else "") or decision.reason,
            steps=tuple(done),
            began=began,
            sink=sink,
        )

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def rotation(self) -> Rotation | None:
        """The rotation as journalled after the last step this run took, if any."""
        return self.steps[-1].rotation if self.steps else None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.decision.as_dict()
        last = self.rotation
        out.update(
            rotation_id=self.rotation_id or self.decision.rotation_id,
            state=str(self.state) if self.state else None,
            outcome=str(self.result),
            new_credential_id=last.new_credential_id if last else None,
            steps=[s.record("").as_dict() for s in self.steps],
            detail=self.reason,
            error=self.error,
        )
        return out


def would(
    step: Step,
    decision: Decision,
    result: Result,
    reason: str,
    steps: Sequence[StepResult] = (),
) -> Report:
    """A dry run's report of ``decision``, and its audit line saying what would happen;
    ``steps``: the steps that would run (``rotator.rotation.preview``)."""
    audit.step_event(step, Outcome.DRY_RUN, decision=decision, reason=reason)
    return Report(decision=decision, result=result, reason=reason, steps=tuple(steps))


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """Everything one sweep decided and did."""

    run_id: str
    account: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime
    plan: Plan
    reports: tuple[Report, ...]
    inventory: Inventory | None = None  # what IAM held when the sweep planned
    corrupt: tuple[CorruptRecord, ...] = ()  # journal rows quarantined (skipped, not ok)

    def counts(self) -> dict[str, int]:
        """Totals for ``sweep.finished``, metrics and notifications: one per ``Result``
        (zero included), plus ``decisions``, ``started`` (rotations this sweep began) and
        ``corrupt`` (journal rows quarantined)."""
        results = Counter(r.result for r in self.reports)
        counts = {"decisions": len(self.reports), "started": sum(r.began for r in self.reports)}
        counts.update({str(result): results[result] for result in Result})
        counts["corrupt"] = len(self.corrupt)
        return counts

    @property
    def ok(self) -> bool:
        """False if anything failed, was blocked, or must be retried, or a journal row is
        corrupt."""
        return not self.corrupt and all(r.ok for r in self.reports)

    def head(self) -> dict[str, Any]:
        """Everything but the per-decision results."""
        return {
            "run_id": self.run_id,
            "account": self.account,
            "dry_run": self.dry_run,
            "started_at": utc_iso(self.started_at),
            "finished_at": utc_iso(self.finished_at),
            "counts": json_counts(self.counts()),
            "ok": self.ok,
            "corrupt": [corrupt_dict(c) for c in self.corrupt],
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.head(), "results": [r.as_dict() for r in self.reports]}


def json_counts(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` with JSON's key spelling: ``would_rotate`` for ``would-rotate`` (a key a
    script can name as ``.counts.would_rotate``)."""
    return {key.replace("-", "_"): n for key, n in counts.items()}


def corrupt_dict(bad: CorruptRecord) -> dict[str, Any]:
    """A quarantined journal row, for JSON output."""
    account, user, kind, slot = bad.target or (None, None, None, None)
    return {
        "rotation_id": bad.rotation_id,
        "account": account,
        "user": user,
        "kind": kind,
        "slot": slot or None,
        "field": bad.field,
        "detail": bad.detail,
        "state": "corrupt",
    }
