"""What a sweep did, per decision and in total: the engine's return value, which the CLI,
the daemon's metrics and the Lambda handler render."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rotator import audit
from rotator.model import (
    Action,
    Decision,
    Inventory,
    Outcome,
    Plan,
    Rotation,
    RotationState,
    Step,
)
from rotator.rotation.steps import StepResult

# The reason of a decision a sweep out of time did not start (Engine.sweep's time_left).
DEFERRED = "deferred: too little time left in this run; the next sweep does it"

# Outcomes after which a sweep exits non-zero (something failed or needs a human).
_BAD = frozenset({Outcome.FAILED, Outcome.BLOCKED, Outcome.RETRY})


@dataclass(frozen=True, kw_only=True)
class Report:
    """What one sweep did about one decision."""

    decision: Decision
    reason: str
    rotation_id: str | None = None
    state: RotationState | None = None
    outcome: Outcome | None = None
    steps: tuple[StepResult, ...] = ()

    @classmethod
    def of(
        cls, decision: Decision, rotation: Rotation, done: Sequence[StepResult], reason: str = ""
    ) -> Report:
        last = done[-1] if done else None
        return cls(
            decision=decision,
            rotation_id=rotation.rotation_id,
            state=rotation.state,
            outcome=last.outcome if last else None,
            reason=reason or (last.reason if last else "") or decision.reason,
            steps=tuple(done),
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.decision.as_dict()
        out.update(
            rotation_id=self.rotation_id or self.decision.rotation_id,
            state=str(self.state) if self.state else None,
            outcome=str(self.outcome) if self.outcome else None,
            steps=[f"{s.step}:{s.outcome}" for s in self.steps],
            result=self.reason,
        )
        return out


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

    def counts(self) -> dict[str, int]:
        """Totals for ``sweep.finished``, metrics and notifications."""
        actions = Counter(r.decision.action for r in self.reports)
        outcomes = Counter(r.outcome for r in self.reports)
        return {
            "decisions": len(self.reports),
            "started": sum(
                1 for r in self.reports if r.decision.action is Action.ROTATE and r.steps
            ),
            "advanced": sum(
                1 for r in self.reports if r.decision.action is Action.ADVANCE and r.steps
            ),
            "completed": sum(1 for r in self.reports if r.state is RotationState.COMPLETED),
            "disabled": sum(
                1
                for r in self.reports
                if r.decision.action is Action.DISABLE and r.outcome is Outcome.DONE
            ),
            "held": outcomes[Outcome.HELD],
            "blocked": outcomes[Outcome.BLOCKED],
            "failed": outcomes[Outcome.FAILED],
            "retry": outcomes[Outcome.RETRY],
            "waiting": actions[Action.WAIT],
            "deferred": sum(1 for r in self.reports if r.reason == DEFERRED),
            "skipped": actions[Action.SKIP],
            "excluded": actions[Action.EXCLUDE],
        }

    @property
    def ok(self) -> bool:
        """False if anything failed, was blocked, or must be retried."""
        return not any(r.outcome in _BAD for r in self.reports)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "account": self.account,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "counts": self.counts(),
            "ok": self.ok,
            "results": [r.as_dict() for r in self.reports],
        }


def would(step: Step, decision: Decision, reason: str) -> Report:
    """A dry run's report of ``decision``, and its audit line saying what would happen."""
    audit.step_event(step, Outcome.DRY_RUN, decision=decision, reason=reason)
    return Report(decision=decision, outcome=Outcome.DRY_RUN, reason=decision.reason)
