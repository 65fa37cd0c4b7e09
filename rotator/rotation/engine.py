"""The engine: one sweep = reconcile + plan + advance what is due + start what the plan says.

It knows the protocol (``rotator.rotation.protocol``) and the ports (journal, kinds, sinks) but no
IAM details. Work on different holders runs concurrently under ``max_concurrency``; work
on one rotation is serialised by its journal lease, so two sweeps (two processes, or a
daemon and an emergency CLI call) never work the same credential at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

from rotator import audit
from rotator.aws import Aws
from rotator.errors import (
    Conflict,
    LeaseLost,
    Refused,
    RotatorError,
)
from rotator.inventory import collect
from rotator.journal.base import Journal
from rotator.kinds import CredentialKind
from rotator.model import (
    SHAPES,
    Action,
    Decision,
    Inventory,
    Lease,
    Outcome,
    Plan,
    Rotation,
    Shape,
    Step,
    new_id,
    utcnow,
)
from rotator.planner import plan
from rotator.policy import Rule
from rotator.progress import NO_PROGRESS, WORK, Counter, ProgressFn
from rotator.rotation.driver import Driver
from rotator.rotation.emergency import Request
from rotator.rotation.rechecks import changed_since_plan, still_blocked
from rotator.rotation.report import DEFERRED, Report, SweepResult, would
from rotator.rotation.requests import OnDemand
from rotator.rotation.session import Session, open_session
from rotator.rotation.steps import StepResult, Steps
from rotator.settings import Config

# Decisions that change something: a sweep out of time (Engine.sweep's time_left) starts
# none of them and reports them with reason DEFERRED.
_WORK = frozenset({Action.ROTATE, Action.ADVANCE, Action.DISABLE})


class Engine:
    """Drives rotations for one policy against one account."""

    def __init__(
        self,
        *,
        config: Config,
        journal: Journal,
        aws: Aws,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.aws = aws
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{new_id('w')}"
        self.driver = Driver(
            journal=journal,
            owner=self.owner,
            lease_ttl=config.journal.lease_ttl,
            retry=config.retry,
            clock=clock,
        )
        self._log = audit.get_logger()

    # -- public ---------------------------------------------------------------------------

    async def plan(self, *, progress: ProgressFn = NO_PROGRESS) -> Plan:
        """What a sweep would do now, changing nothing."""
        async with self.session(dry_run=True) as sweep:
            return (await self._plan(sweep, progress))[1]

    async def sweep(
        self,
        *,
        dry_run: bool = False,
        time_left: Callable[[], float] | None = None,
        progress: ProgressFn = NO_PROGRESS,
    ) -> SweepResult:
        """One sweep: advance what is due, start what the plan says. Never raises for a
        single rotation's failure: each is reported in the result and the audit log.

        ``time_left`` (seconds, e.g. a Lambda's remaining time minus a margin) is asked
        before each decision that changes something: once it is <= 0 no further rotation is
        started or advanced; those decisions are reported with reason ``DEFERRED`` and left
        for the next sweep. Work already begun runs to its end. ``progress`` hears of each
        user read and each decision that changes something carried out."""
        run_id = new_id("run")
        audit.bind(run_id=run_id, dry_run=dry_run)
        started = time.monotonic()
        async with self.session(dry_run=dry_run) as sweep:
            audit.bind(account=sweep.account)
            self._log.info(audit.SWEEP_STARTED, rules=len(self.config.rules))
            inventory, the_plan = await self._plan(sweep, progress)
            limit = asyncio.Semaphore(self.config.max_concurrency)
            worked = Counter(progress, WORK, sum(1 for d in the_plan if d.action in _WORK))

            async def one(decision: Decision) -> Report:
                async with limit:
                    if decision.action not in _WORK:
                        return await self._execute(decision, sweep)
                    try:
                        if time_left is not None and time_left() <= 0:
                            self._log.info(audit.NOTICE, user=decision.user, reason=DEFERRED)
                            return Report(decision=decision, reason=DEFERRED)
                        return await self._execute(decision, sweep)
                    finally:
                        worked.tick()

            reports = await asyncio.gather(*(one(d) for d in the_plan))
        result = SweepResult(
            run_id=run_id,
            account=sweep.account,
            dry_run=dry_run,
            started_at=sweep.started_at,
            finished_at=self.clock(),
            plan=the_plan,
            reports=tuple(reports),
            inventory=inventory,
        )
        self._log.info(
            audit.SWEEP_FINISHED,
            duration_ms=int((time.monotonic() - started) * 1000),
            **result.counts(),
        )
        return result

    async def rotate_now(
        self,
        request: Request,
        *,
        access_key_id: str | None = None,
        dry_run: bool = False,
        patience: timedelta | None = None,
    ) -> Report:
        """Rotate one credential now, on an operator's request (see ``OnDemand.rotate``)."""
        return await OnDemand(self).rotate(
            request, access_key_id=access_key_id, dry_run=dry_run, patience=patience
        )

    async def rollback(self, rotation_id: str) -> StepResult:
        """Roll back one rotation (see ``OnDemand.rollback``)."""
        return await OnDemand(self).rollback(rotation_id)

    # -- plumbing (shared with ``OnDemand``) ------------------------------------------------

    def session(self, *, dry_run: bool) -> AbstractAsyncContextManager[Session]:
        return open_session(
            aws=self.aws,
            journal=self.journal,
            config=self.config,
            clock=self.clock,
            dry_run=dry_run,
        )

    async def _plan(self, sweep: Session, progress: ProgressFn) -> tuple[Inventory, Plan]:
        rules = [r for r in self.config.rules if r.enabled]
        inventory = await collect(
            iam=sweep.iam,
            account=sweep.account,
            rules=rules,
            kinds=sweep.kinds,
            max_concurrency=self.config.max_concurrency,
            now=self.clock(),
            progress=progress,
        )
        # Read after the inventory: a rotation that created a key the inventory saw was
        # journalled before that key existed, so it is in this list (or finished).
        active = [r for r in await self.journal.list_active() if r.account == sweep.account]
        # Every rule, disabled ones too: a disabled rule starts nothing new (the planner
        # skips it) but the rotations it started still finish.
        return inventory, plan(inventory, self.config.rules, active, self.clock())

    # -- one decision ---------------------------------------------------------------------

    async def _execute(self, decision: Decision, sweep: Session) -> Report:
        try:
            return await self._act(decision, sweep)
        except RotatorError as exc:  # could not even start (e.g. IAM unreachable)
            audit.step_event(Step.PLAN, Outcome.RETRY, decision=decision, reason=str(exc))
            return Report(decision=decision, outcome=Outcome.RETRY, reason=str(exc))

    async def _act(self, decision: Decision, sweep: Session) -> Report:
        if decision.action is Action.BLOCK:
            if decision.rotation_id is None and SHAPES[decision.kind] is Shape.TWO_SLOT:
                changed = await still_blocked(decision, sweep, self.journal)
                if changed is not None:
                    return Report(decision=decision, reason=changed)
            audit.step_event(Step.PLAN, Outcome.BLOCKED, decision=decision, reason=decision.reason)
            return Report(decision=decision, outcome=Outcome.BLOCKED, reason=decision.reason)
        if decision.action is Action.DISABLE:
            return await self._disable(decision, sweep)
        if decision.action not in (Action.ROTATE, Action.ADVANCE):
            return Report(decision=decision, reason=decision.reason)
        if sweep.dry_run:
            what = "start a rotation" if decision.action is Action.ROTATE else "advance"
            audit.step_event(Step.PLAN, Outcome.DRY_RUN, decision=decision, reason=f"would {what}")
            return Report(decision=decision, outcome=Outcome.DRY_RUN, reason=decision.reason)
        if decision.action is Action.ROTATE:
            return await self._start(decision, sweep)
        return await self._advance(decision, sweep)

    async def _start(self, decision: Decision, sweep: Session) -> Report:
        rule = self.config.rule(decision.rule)
        assert rule is not None
        kind = sweep.kinds[rule.kind]
        stale = await changed_since_plan(decision, sweep, self.journal)
        if stale:
            return Report(decision=decision, outcome=None, reason=stale)
        return await self.begin(decision, rule, kind, rule.timings(), sweep)

    async def begin(
        self,
        decision: Decision,
        rule: Rule,
        kind: CredentialKind,
        timings: tuple[timedelta, timedelta],
        sweep: Session,
        *,
        emergency: bool = False,
    ) -> Report:
        """Journal a new rotation (holding its lease from the start) and drive it."""
        now = self.clock()
        in_place = SHAPES[rule.kind] is Shape.IN_PLACE
        rotation = Rotation.start(
            account=decision.account,
            user=decision.user,
            kind=decision.kind,
            slot=decision.slot,
            rule=rule.name,
            now=now,
            old_credential_id=None if in_place else decision.credential_id,
            delete_first=decision.delete_first,
            deactivate_after=timings[0],
            delete_after=timings[1],
            emergency=emergency,
            reason=decision.reason,
        )
        expires = now + self.config.journal.lease_ttl
        rotation = rotation.evolve(lease=Lease(owner=self.owner, expires_at=expires, fence=1))
        try:
            rotation = await self.journal.add(rotation)
        except Conflict as exc:
            if emergency:
                raise Refused(f"{exc}; finish or roll it back first") from None
            return Report(decision=decision, reason=f"skipped: {exc}")
        return await self.drive(rotation, rule, kind, decision, sweep)

    async def _disable(self, decision: Decision, sweep: Session) -> Report:
        """Take a credential unused for too long out of service (not a rotation)."""
        assert decision.credential_id is not None
        if sweep.dry_run:
            return would(Step.DISABLE, decision, f"would disable: {decision.reason}")
        await sweep.kinds[decision.kind].disable(decision.user, decision.credential_id)
        audit.step_event(Step.DISABLE, Outcome.DONE, decision=decision, reason=decision.reason)
        return Report(decision=decision, outcome=Outcome.DONE, reason=decision.reason)

    async def _advance(self, decision: Decision, sweep: Session) -> Report:
        assert decision.rotation_id is not None
        try:
            rotation = await self.journal.acquire(
                decision.rotation_id, self.owner, self.config.journal.lease_ttl, self.clock()
            )
        except LeaseLost as exc:
            return Report(decision=decision, reason=f"skipped: {exc}")
        rule = self.config.rule(rotation.rule)
        return await self.drive(rotation, rule, sweep.kinds[rotation.kind], decision, sweep)

    async def drive(
        self,
        rotation: Rotation,
        rule: Rule | None,
        kind: CredentialKind,
        decision: Decision,
        sweep: Session,
    ) -> Report:
        assert rule is not None
        steps = Steps(
            journal=self.journal, kind=kind, sink=sweep.sink(rule), rule=rule, clock=self.clock
        )
        try:
            rotation, done = await self.driver.drive(rotation, steps)
        except LeaseLost as exc:
            self._log.warning(audit.NOTICE, rotation_id=rotation.rotation_id, reason=str(exc))
            return Report.of(decision, rotation, [], reason=f"stopped: {exc}")
        return Report.of(decision, rotation, done)
