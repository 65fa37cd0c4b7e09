"""``Rotations``: everything that moves a rotation — the journal, the driver, the sinks, the
clock and the policy's rules. The sweep (``rotator.rotation.sweep``) and an operator's
requests (``rotator.rotation.requests``) both go through it and never import each other.

Each method returns a ``Report`` whose ``result`` says what happened; none raises for one
rotation's trouble except where its docstring says so. A rotation whose rule is gone from
the policy is reported BLOCKED with what to do; another worker's lease is reported WAITING
with its holder and when its lease ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

from rotator import audit
from rotator.aws import Aws
from rotator.errors import LeaseLost, Refused, RotatorError, RuleGone
from rotator.journal.base import Journal
from rotator.model import Credential, Decision, Lease, Outcome, Rotation, Shape, Step, utcnow
from rotator.policy import Rule
from rotator.rotation.driver import Driver
from rotator.rotation.emergency import Request, escalate
from rotator.rotation.owners import this_worker
from rotator.rotation.report import Report, Result
from rotator.rotation.rollback import roll_back
from rotator.rotation.session import Session, open_session
from rotator.rotation.steps import StepResult, Steps, sink_key
from rotator.settings import Config, call_budget
from rotator.sinks import where


def default_owner() -> str:
    """This worker's lease owner (``owners.this_worker``)."""
    return this_worker()


def waiting(decision: Decision, exc: LeaseLost, now: datetime | None = None) -> Report:
    """The report of a decision another worker's lease holds up, naming the holder.
    ``stalled`` if the lease looks expired at ``now`` (by this machine's clock: a hint only,
    a takeover still needs a full lease period of silence)."""
    holder = exc.holder or "another worker"
    until = f" until {exc.until}" if exc.until else ""
    reason = f"{holder} holds rotation {exc.rotation_id}{until}; the next sweep continues it"
    stalled = bool(
        now is not None
        and exc.seen is not None
        and exc.until
        and datetime.fromisoformat(exc.until) <= now
    )
    audit.get_logger().info(
        audit.ROTATION_WAITING,
        rotation_id=exc.rotation_id,
        user=decision.user,
        kind=str(decision.kind),
        holder=exc.holder,
        until=exc.until,
        reason=reason,
    )
    return Report(decision=decision, result=Result.WAITING, reason=reason, stalled=stalled)


def new_rotation(
    decision: Decision,
    rule: Rule,
    timings: tuple[timedelta, timedelta],
    now: datetime,
    *,
    emergency: bool = False,
) -> Rotation:
    """The rotation ``decision`` starts (not journalled): ``Rotations.start`` journals it,
    a dry run previews it (``rotator.rotation.preview``). ``timings``: deactivate_after and
    delete_after."""
    in_place = rule.facts.shape is Shape.IN_PLACE
    return Rotation.start(
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


class Rotations:
    """Start, advance, escalate and roll back rotations for one policy and one worker."""

    def __init__(
        self,
        *,
        config: Config,
        journal: Journal,
        aws: Aws,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        hub: Aws | None = None,
        account: str | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.aws = aws
        # An organization sweep's member account: the account ``aws`` must act in, and the
        # hub's ``Aws`` for the sinks kept there.
        self.hub = hub
        self.account = account
        self.clock = clock
        self.owner = owner or default_owner()
        self.driver = Driver(
            journal=journal,
            owner=self.owner,
            lease_ttl=config.journal.lease_ttl,
            retry=config.retry,
            clock=clock,
            margin=call_budget(config.aws),
        )

    def session(self, *, dry_run: bool) -> AbstractAsyncContextManager[Session]:
        """The clients and kinds one sweep or one request shares (``open_session``)."""
        return open_session(
            aws=self.aws,
            journal=self.journal,
            config=self.config,
            clock=self.clock,
            dry_run=dry_run,
            hub=self.hub,
            expect_account=self.account,
        )

    def rule_of(self, rotation: Rotation) -> Rule:
        """The rule a rotation was started by. Raises ``RuleGone`` (with what to do) if the
        policy no longer has it."""
        rule = self.config.rule(rotation.rule)
        if rule is None:
            raise RuleGone(rotation.rotation_id, rotation.rule, emergency=rotation.emergency)
        return rule

    # -- a new rotation ---------------------------------------------------------------------

    async def start(
        self,
        decision: Decision,
        rule: Rule,
        session: Session,
        timings: tuple[timedelta, timedelta],
        *,
        emergency: bool = False,
        expect_fence: int | None = None,
        listed: Sequence[Credential] | None = None,
    ) -> Report:
        """Journal a new rotation (holding its lease from the start) and drive it. Raises
        ``Conflict`` if an unfinished rotation of the same credential exists, or if the
        target's fence is no longer ``expect_fence`` (it was rotated since it was read).
        ``listed``: what IAM held for the holder a moment ago, if the caller just looked."""
        now = self.clock()
        rotation = new_rotation(decision, rule, timings, now, emergency=emergency)
        lease = Lease(owner=self.owner, expires_at=now + self.config.journal.lease_ttl, fence=1)
        rotation = await self.journal.add(rotation.evolve(lease=lease), expect_fence=expect_fence)
        return await self._drive(rotation, rule, session, decision, began=True, listed=listed)

    # -- a rotation in flight ---------------------------------------------------------------

    async def advance(self, decision: Decision, rotation_id: str, session: Session) -> Report:
        """Take the rotation's lease and run every step that is due. Another worker's lease
        gives WAITING; a rule gone from the policy gives BLOCKED."""
        try:
            rotation = await self.driver.take(rotation_id)
        except LeaseLost as exc:
            return waiting(decision, exc, self.clock())
        return await self.drive_held(rotation, session, decision)

    async def await_silence(
        self, decision: Decision, rotation_id: str, patience: timedelta
    ) -> Rotation | Report:
        """Watch a stalled rotation's lease for a full lease period on this process's
        clock (at most ``patience``) and take it over if its holder showed no sign of life
        (``Driver.take_over``); the rotation, now held by this worker, or the WAITING report
        if the holder is alive or the wait ran out."""
        try:
            return await self.driver.take_over(rotation_id, patience, while_silent=True)
        except LeaseLost as exc:
            return waiting(decision, exc)

    async def drive_held(self, rotation: Rotation, session: Session, decision: Decision) -> Report:
        """Drive a rotation whose lease this worker holds; the lease is released in every
        case. A rule gone from the policy gives BLOCKED."""
        try:
            rule = self.rule_of(rotation)
        except RuleGone as exc:
            await self.driver.release(rotation)
            audit.step_event(Step.PLAN, Outcome.BLOCKED, rotation=rotation, reason=str(exc))
            return Report(
                decision=decision,
                result=Result.BLOCKED,
                reason=str(exc),
                rotation_id=rotation.rotation_id,
                state=rotation.state,
            )
        return await self._drive(rotation, rule, session, decision)

    async def escalate(
        self,
        under_way: Rotation,
        request: Request,
        session: Session,
        decision: Decision,
        patience: timedelta,
    ) -> Report:
        """Make the rotation under way for a leaked credential an emergency (``escalate``)
        and drive it: the leaked credential is deactivated at once. Waits up to ``patience``
        for a worker holding the lease; raises ``LeaseLost`` after that, and the errors of
        ``escalate``."""
        rotation = await self.driver.take_over(under_way.rotation_id, patience=patience)
        try:
            rotation = await self.journal.save(escalate(rotation, request, self.clock()))
        except RotatorError:
            await self.driver.release(rotation)
            raise
        audit.get_logger().warning(
            audit.ROTATION_ESCALATED,
            rotation_id=rotation.rotation_id,
            user=rotation.user,
            kind=str(rotation.kind),
            rule=rotation.rule,
            credential_id=request.credential_id,
            state=str(rotation.state),
            hold=str(request.hold),
            reason=rotation.reason,
        )
        return await self.drive_held(rotation, session, decision)

    async def roll_back(self, rotation_id: str, session: Session) -> StepResult:
        """Roll one rotation back (``rollback.roll_back``), under its lease, journalled and
        audited like any step. Raises ``NotFound``, ``LeaseLost`` (another worker is on it)
        or ``Refused``."""
        seen = await self.journal.get(rotation_id)
        if seen.account != session.account:  # a journal shared by many accounts
            raise Refused(
                f"rotation {rotation_id} is in account {seen.account}, not {session.account} "
                "(with [accounts], rotator rolls it back in its own account)"
            )
        rotation = await self.driver.take(rotation_id)
        try:
            rule = self.config.rule(rotation.rule)
            result = await roll_back(
                rotation,
                journal=self.journal,
                kind=session.kind(rotation.kind),
                sink=None if rule is None else session.sink(rule),
                clock=self.clock,
            )
        except RotatorError as exc:
            audit.step_event(Step.ROLLBACK, Outcome.BLOCKED, rotation=rotation, reason=str(exc))
            raise
        finally:
            await self.driver.release(rotation)
        audit.step_event(
            Step.ROLLBACK, result.outcome, rotation=result.rotation, reason=result.reason
        )
        await self.journal.record_step(result.record(audit.current("run_id")))
        return result

    async def _drive(
        self,
        rotation: Rotation,
        rule: Rule,
        session: Session,
        decision: Decision,
        *,
        began: bool = False,
        listed: Sequence[Credential] | None = None,
    ) -> Report:
        sink = session.sink(rule)
        steps = Steps(
            journal=self.journal,
            kind=session.kind(rotation.kind),
            sink=sink,
            rule=rule,
            clock=self.clock,
            own=session.own,
        )
        if listed is not None:
            steps.seed(listed)
        try:
            rotation, done = await self.driver.drive(rotation, steps)
        except LeaseLost as exc:
            audit.get_logger().warning(
                audit.ROTATION_LEASE_LOST,
                rotation_id=rotation.rotation_id,
                holder=exc.holder,
                reason=str(exc),
            )
            reason = f"stopped: {exc}; the worker that holds it now goes on"
            return Report(
                decision=decision,
                result=Result.WAITING,
                reason=reason,
                rotation_id=rotation.rotation_id,
                state=rotation.state,
                began=began,
            )
        return Report.of(
            decision, rotation, done, began=began, sink=where(rule, sink, sink_key(rotation))
        )
