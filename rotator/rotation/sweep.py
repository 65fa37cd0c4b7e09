"""The sweep: plan from what IAM holds and the journal, then carry out every decision.

A sweep never raises for one decision's trouble: each decision gets a ``Report`` whose
``Result`` says what happened, and errors keep their class — a transient one is RETRY, a
permanent one (``AccessDenied`` ...) is FAILED with its code, another worker's lease is
WAITING. Decisions on different holders run concurrently, at most ``max_concurrency`` at
once; work on one rotation is serialised by its journal lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from rotator import audit
from rotator.backoff import holding as _holding
from rotator.errors import (
    AwsError,
    Conflict,
    CorruptRecord,
    LeaseLost,
    Refused,
    RotatorError,
    SinkError,
    Transient,
)
from rotator.inventory import collect
from rotator.kinds import Disables, facts_of
from rotator.model import (
    Action,
    Credential,
    Decision,
    Holder,
    Inventory,
    Outcome,
    Plan,
    Shape,
    Status,
    Step,
    new_id,
)
from rotator.planner import plan
from rotator.progress import NO_PROGRESS, WORK, Counter, ProgressFn
from rotator.rotation.preview import preview
from rotator.rotation.rechecks import (
    changed_since_plan,
    inventory_view,
    late_orphan,
    still_blocked,
)
from rotator.rotation.report import Report, Result, SweepResult, would
from rotator.rotation.rotations import Rotations, new_rotation, waiting
from rotator.rotation.session import Session
from rotator.rotation.steps import StepResult
from rotator.sinks.base import SinkKey

# Decisions that change something: a sweep out of time (``time_left``) starts none of them.
_WORK = frozenset({Action.ROTATE, Action.ADVANCE, Action.DISABLE})
# Decisions that change nothing, and their result.
_NOTHING_TO_DO = {
    Action.WAIT: Result.NOT_DUE,
    Action.SKIP: Result.SKIPPED,
    Action.EXCLUDE: Result.EXCLUDED,
}
DEFERRED = "deferred: too little time left in this run; the next sweep does it"


def error_code(exc: RotatorError) -> str:
    """The code a report carries for ``exc``: AWS's error code, else the error's class."""
    return exc.code if isinstance(exc, AwsError) else type(exc).__name__


class Sweep:
    """Plans and dispatches; every change goes through ``Rotations``."""

    def __init__(self, rotations: Rotations, shared: asyncio.Semaphore | None = None) -> None:
        """``shared``: a limit over several sweeps at once (an organization sweep's global
        ``max_concurrency``), taken after this sweep's own ``max_concurrency``."""
        self._rotations = rotations
        self._shared = shared
        self._config = rotations.config
        self._log = audit.get_logger()

    async def plan(self, *, progress: ProgressFn = NO_PROGRESS) -> Plan:
        """What a sweep would do now, changing nothing."""
        async with self._rotations.session(dry_run=True) as session:
            the_plan = (await self._plan(session, progress))[1]
            return await self._preflight(the_plan, session)

    async def _preflight(self, the_plan: Plan, session: Session) -> Plan:
        """The plan with every rotation whose sink could not take the secret (``check``)
        shown blocked, with the sink's reason: found now, before any key is made."""

        async def one(decision: Decision) -> Decision:
            rule = self._config.rule(decision.rule)
            if rule is None:
                return decision
            key = SinkKey(
                account=decision.account, user=decision.user, kind=decision.kind, slot=decision.slot
            )
            try:
                await session.sink(rule).check(key)
            except SinkError as exc:
                reason = f"the sink cannot store the new secret: {exc}"
                return replace(decision, action=Action.BLOCK, reason=reason)
            return decision

        # Only rotations are checked: no task for each of 10,000 decisions with nothing to do.
        decisions = list(the_plan)
        rotating = [n for n, d in enumerate(decisions) if d.action is Action.ROTATE]
        checked = await asyncio.gather(*(one(decisions[n]) for n in rotating))
        for n, decision in zip(rotating, checked, strict=True):
            decisions[n] = decision
        return Plan(decisions=tuple(decisions))

    async def run(
        self,
        *,
        dry_run: bool = False,
        time_left: Callable[[], float] | None = None,
        progress: ProgressFn = NO_PROGRESS,
    ) -> SweepResult:
        """One sweep: advance what is due, start what the plan says.

        ``time_left`` (seconds, e.g. a Lambda's remaining time minus a margin) is asked
        before each decision that changes something: once it is <= 0 no further rotation is
        started or advanced; those decisions are DEFERRED to the next sweep. Work already
        begun runs to its end. ``progress`` hears of each user read and each decision that
        changes something carried out."""
        run_id = new_id("run")
        audit.bind(run_id=run_id, dry_run=dry_run)
        started = time.monotonic()
        async with self._rotations.session(dry_run=dry_run) as session:
            audit.bind(account=session.account)
            self._log.info(audit.SWEEP_STARTED, rules=len(self._config.rules))
            inventory, the_plan = await self._plan(session, progress)
            corrupt = self._quarantined(session.account)
            held = {c.target: c for c in corrupt if c.target is not None}
            limit = asyncio.Semaphore(self._config.max_concurrency)
            worked = Counter(progress, WORK, sum(1 for d in the_plan if d.action in _WORK))

            # The account's own limit first: a task waiting for a global slot then keeps
            # only its own account's work waiting, not another account's.
            gates = (limit,) if self._shared is None else (limit, self._shared)

            # The holders of this sweep's rotations, whose listing may serve as the
            # re-check before each is journalled (``rechecks.inventory_view``).
            rotating = {d.user for d in the_plan if d.action is Action.ROTATE}
            holders = {
                h.name: h for h in inventory.holders if h.name in rotating and not h.account_held
            }

            async def one(decision: Decision) -> Report:
                target = (decision.account, decision.user, str(decision.kind), decision.slot)
                if (bad := held.get(target)) is not None:  # a human must look at the row
                    return Report(decision=decision, result=Result.BLOCKED, reason=str(bad))
                # The slots are lent out while the decision's work waits (``backoff.pause``).
                async with contextlib.AsyncExitStack() as stack:
                    for gate in gates:
                        await stack.enter_async_context(gate)
                    with _holding(*gates):
                        if decision.action not in _WORK:
                            return await self._execute(decision, session)
                        try:
                            if time_left is not None and time_left() <= 0:
                                return self._deferred(decision)
                            holder = holders.get(decision.user)
                            return await self._execute(decision, session, holder)
                        finally:
                            worked.tick()

            # Most decisions of a large account have nothing to do: they are reported at
            # once, without a task each (10,000 of them would be 10,000 tasks and frames).
            slots: list[Report | None] = [
                None
                if d.action not in _NOTHING_TO_DO
                or (d.account, d.user, str(d.kind), d.slot) in held
                else Report(decision=d, result=_NOTHING_TO_DO[d.action], reason=d.reason)
                for d in the_plan
            ]
            decisions = list(the_plan)
            busy = [n for n, report in enumerate(slots) if report is None]
            done = await asyncio.gather(*(one(decisions[n]) for n in busy))
            for n, report in zip(busy, done, strict=True):
                slots[n] = report
            reports = [r for r in slots if r is not None]
            reports = await self._stalled(reports, session, limit, time_left)
        result = SweepResult(
            run_id=run_id,
            account=session.account,
            dry_run=dry_run,
            started_at=session.started_at,
            finished_at=self._rotations.clock(),
            plan=the_plan,
            reports=tuple(reports),
            inventory=inventory,
            corrupt=tuple(corrupt),
        )
        self._log.info(
            audit.SWEEP_FINISHED,
            duration_ms=int((time.monotonic() - started) * 1000),
            **result.counts(),
        )
        return result

    async def _plan(self, session: Session, progress: ProgressFn) -> tuple[Inventory, Plan]:
        rules = [r for r in self._config.rules if r.enabled]
        inventory = await collect(
            iam=session.iam,
            account=session.account,
            rules=rules,
            kinds=session.kinds,
            max_concurrency=self._config.max_concurrency,
            now=self._rotations.clock(),
            progress=progress,
        )
        # Read after the inventory: a rotation that created a key the inventory saw was
        # journalled before that key existed, so it is in this list (or finished).
        journal = self._rotations.journal
        active = [r for r in await journal.list_active() if r.account == session.account]
        # Every rule, disabled ones too: a disabled rule starts nothing new (the planner
        # skips it) but the rotations it started still finish.
        return inventory, plan(inventory, self._config.rules, active, self._rotations.clock())

    def _quarantined(self, account: str) -> list[CorruptRecord]:
        """The journal rows the last listing skipped, each logged: those of this account,
        and those whose account cannot be read."""
        found = [
            c
            for c in self._rotations.journal.quarantined()
            if c.target is None or c.target[0] == account
        ]
        for bad in found:
            self._log.error(
                audit.JOURNAL_CORRUPT_RECORD,
                rotation_id=bad.rotation_id,
                field=bad.field,
                reason=str(bad),
                quarantined="skipped: fix or delete the row; the others go on",
            )
        return found

    async def _stalled(
        self,
        reports: list[Report],
        session: Session,
        limit: asyncio.Semaphore,
        time_left: Callable[[], float] | None,
    ) -> list[Report]:
        """Rotations whose lease looked expired are watched, all at once and outside the
        concurrency limit, for a full lease period (within the time left); those whose
        holder stayed silent are taken over and driven now."""
        stalled = [i for i, r in enumerate(reports) if r.stalled and r.decision.rotation_id]
        if not stalled:
            return reports
        ttl = self._config.journal.lease_ttl
        patience = ttl + timedelta(seconds=min(5.0, ttl.total_seconds() / 5))
        if time_left is not None:
            patience = min(patience, timedelta(seconds=max(0.0, time_left())))

        async def take(report: Report) -> Report:
            decision = report.decision
            rid = decision.rotation_id or ""
            held = await self._rotations.await_silence(decision, rid, patience)
            if isinstance(held, Report):
                return held
            async with limit:
                return await self._rotations.drive_held(held, session, decision)

        taken = await asyncio.gather(*(take(reports[i]) for i in stalled))
        for i, report in zip(stalled, taken, strict=True):
            reports[i] = report
        return reports

    def _deferred(self, decision: Decision) -> Report:
        self._log.info(
            audit.ROTATION_DEFERRED,
            user=decision.user,
            kind=str(decision.kind),
            rotation_id=decision.rotation_id,
            reason=DEFERRED,
        )
        return Report(decision=decision, result=Result.DEFERRED, reason=DEFERRED)

    # -- one decision -----------------------------------------------------------------------

    async def _execute(
        self, decision: Decision, session: Session, holder: Holder | None = None
    ) -> Report:
        """Carry out one decision; its errors become its report, keeping their class.
        ``holder``: what the inventory read of the decision's holder, if it was read."""
        try:
            return await self._act(decision, session, holder)
        except LeaseLost as exc:
            return waiting(decision, exc, self._rotations.clock())
        except Transient as exc:
            audit.step_event(Step.PLAN, Outcome.RETRY, decision=decision, reason=str(exc))
            return Report(
                decision=decision, result=Result.RETRY, reason=str(exc), error=error_code(exc)
            )
        except RotatorError as exc:  # permanent: retrying every sweep would not help
            audit.step_event(Step.PLAN, Outcome.FAILED, decision=decision, reason=str(exc))
            return Report(
                decision=decision, result=Result.FAILED, reason=str(exc), error=error_code(exc)
            )
        except Exception as exc:  # a bug: this decision fails, the others go on
            reason = f"internal error ({type(exc).__name__}): {exc}"
            self._log.error(
                audit.DECISION_CRASHED,
                user=decision.user,
                kind=str(decision.kind),
                rotation_id=decision.rotation_id,
                reason=reason,
                exc_info=True,
            )
            return Report(
                decision=decision, result=Result.FAILED, reason=reason, error=type(exc).__name__
            )

    async def _act(self, decision: Decision, session: Session, holder: Holder | None) -> Report:
        action = decision.action
        if action in _NOTHING_TO_DO:
            return Report(decision=decision, result=_NOTHING_TO_DO[action], reason=decision.reason)
        if action is Action.BLOCK:
            return await self._block(decision, session)
        if action is Action.DISABLE:
            return await self._disable(decision, session)
        if session.dry_run:
            what = "start a rotation" if action is Action.ROTATE else "advance"
            result = Result.WOULD_ROTATE if action is Action.ROTATE else Result.WOULD_ADVANCE
            steps = await self._preview(decision, session)
            return would(Step.PLAN, decision, result, f"would {what}: {decision.reason}", steps)
        if action is Action.ROTATE:
            return await self._start(decision, session, holder)
        if decision.rotation_id is None:  # the planner names the rotation it advances
            raise ValueError(f"an ADVANCE decision for {decision.user} names no rotation")
        return await self._rotations.advance(decision, decision.rotation_id, session)

    async def _preview(self, decision: Decision, session: Session) -> tuple[StepResult, ...]:
        """The steps a ROTATE or ADVANCE decision would run (``preview``): a new rotation
        as ``Rotations.start`` would journal it, or the rotation in flight as journalled.
        Reads the journal, changes nothing."""
        now = self._rotations.clock()
        if decision.rotation_id is None:
            rule = self._config.rule(decision.rule)
            if rule is None:
                return ()
            rotation = new_rotation(decision, rule, rule.timings(), now)
        else:
            try:
                rotation = await self._rotations.journal.get(decision.rotation_id)
            except RotatorError:  # gone or unreadable since the plan: nothing to preview
                return ()
            rule = self._config.rule(rotation.rule)
            if rule is None:  # the real run reports it BLOCKED (``RuleGone``)
                return ()
        return preview(rotation, rule, session.sink(rule), now)

    async def _block(self, decision: Decision, session: Session) -> Report:
        if decision.rotation_id is None and facts_of(decision.kind).shape is Shape.TWO_SLOT:
            journal = self._rotations.journal
            changed = await still_blocked(decision, session, journal)
            if changed is not None:
                return Report(decision=decision, result=Result.STALE, reason=changed)
            ttl = self._config.journal.lease_ttl
            orphan = await late_orphan(decision, session, journal, ttl)
            if orphan is not None:
                return await self._delete_orphan(decision, session, orphan)
        audit.step_event(Step.PLAN, Outcome.BLOCKED, decision=decision, reason=decision.reason)
        return Report(decision=decision, result=Result.BLOCKED, reason=decision.reason)

    async def _delete_orphan(
        self, decision: Decision, session: Session, orphan: Credential
    ) -> Report:
        """Deactivate and delete a late create's orphan (``late_orphan``)."""
        reason = (
            f"{orphan.credential_id} was created by a rotation's create that was answered too "
            "late (its worker had lost its lease); its secret never reached a sink: deleted"
        )
        if session.dry_run:
            return would(Step.DELETE, decision, Result.WOULD_CLEAN, f"would delete: {reason}")
        kind = session.kind(decision.kind)
        await kind.set_status(decision.user, orphan.credential_id, Status.INACTIVE)
        await kind.delete(decision.user, orphan.credential_id)
        self._log.warning(
            audit.ORPHAN_DELETED,
            user=decision.user,
            kind=str(decision.kind),
            credential_id=orphan.credential_id,
            reason=reason,
        )
        return Report(decision=decision, result=Result.CLEANED, reason=reason)

    async def _start(
        self, decision: Decision, session: Session, holder: Holder | None = None
    ) -> Report:
        rule = self._config.rule(decision.rule)
        if rule is None:  # the planner starts rotations only for the rules it was given
            raise ValueError(f"the plan names rule {decision.rule!r}, which the policy lacks")
        # The target's fence is read before IAM is looked at again: a rotation of the same
        # credential by another worker after this point moves it, and the journal then
        # refuses to add ours (in the same write: no check-then-add gap). What the journal
        # says of the target may also show that the inventory's listing still holds.
        journal = self._rotations.journal
        target = await journal.target_state(
            (decision.account, decision.user, decision.kind, decision.slot)
        )
        seen = inventory_view(decision, holder, target, session)
        stale, listed = await changed_since_plan(decision, session, journal, seen)
        if stale:
            return Report(decision=decision, result=Result.STALE, reason=stale)
        try:
            return await self._rotations.start(
                decision, rule, session, rule.timings(), expect_fence=target.fence, listed=listed
            )
        except Conflict as exc:  # another worker journalled it first
            return Report(decision=decision, result=Result.STALE, reason=f"skipped: {exc}")

    async def _disable(self, decision: Decision, session: Session) -> Report:
        """Take a credential unused for too long out of service (not a rotation)."""
        if decision.credential_id is None:  # the planner names the credential it disables
            raise ValueError(f"a DISABLE decision for {decision.user} names no credential")
        if session.dry_run:
            reason = f"would disable: {decision.reason}"
            return would(Step.DISABLE, decision, Result.WOULD_DISABLE, reason)
        kind = session.kind(decision.kind)
        if not isinstance(kind, Disables):  # the planner disables only kinds that can
            raise Refused(f"a {facts_of(decision.kind).noun} cannot be disabled")
        await kind.disable(decision.user, decision.credential_id)
        audit.step_event(Step.DISABLE, Outcome.DONE, decision=decision, reason=decision.reason)
        return Report(decision=decision, result=Result.DISABLED, reason=decision.reason)
