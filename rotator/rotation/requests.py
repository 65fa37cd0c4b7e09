"""An operator's requests, beside the sweeps: rotate one credential now (an emergency
first deactivates it, or escalates the rotation already retiring it) and roll one
rotation back. Both run through the engine's session, journal and driver, so they are
leased, journalled and audited exactly like a sweep's work."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from rotator import audit
from rotator.errors import InputError, Refused, RotatorError
from rotator.kinds import CredentialKind
from rotator.model import (
    ACCOUNT_HELD,
    Action,
    Decision,
    Holder,
    Kind,
    Outcome,
    Rotation,
    Step,
    new_id,
)
from rotator.rotation.emergency import Request, choose, escalate, pick_rule
from rotator.rotation.report import Report, would
from rotator.rotation.rollback import Rollback
from rotator.rotation.session import Session
from rotator.rotation.steps import StepResult

if TYPE_CHECKING:
    from rotator.rotation.engine import Engine


class OnDemand:
    """One operator request on ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._config = engine.config
        self._journal = engine.journal
        self._driver = engine.driver
        self._clock = engine.clock

    async def rotate(
        self,
        request: Request,
        *,
        access_key_id: str | None = None,
        dry_run: bool = False,
        patience: timedelta | None = None,
    ) -> Report:
        """Rotate one credential now, on an operator's request (``rotator rotate``, the
        Lambda's emergency event). An emergency deactivates the named credential first; if
        that credential is the old one of a rotation under way, that rotation is escalated
        instead (``escalate``). Raises ``InputError`` for a request that cannot be carried
        out as asked, ``Refused`` if another rotation of the holder's credential is under way,
        ``LeaseLost`` if a worker holds the rotation to escalate longer than ``patience``
        (default: the journal's ``lease_ttl``)."""
        audit.bind(run_id=new_id("run"), dry_run=dry_run)
        async with self._engine.session(dry_run=dry_run) as sweep:
            audit.bind(account=sweep.account)
            if access_key_id is not None:
                owner = await sweep.owner_of(access_key_id)
                request = replace(
                    request, user=owner, kind=Kind.ACCESS_KEY, credential_id=access_key_id
                )
            if request.user is None:
                raise InputError("name the credential: --access-key-id, or --user and --kind")
            kind = sweep.kinds.get(request.kind)
            if kind is None:
                raise InputError(f"no rule of kind {request.kind} in the policy")
            holder = await self._requested_holder(sweep, request, kind)
            rule = pick_rule(list(self._config.rules), holder, request)
            if request.emergency and (under_way := await self._under_way(holder, request)):
                wait = self._config.journal.lease_ttl if patience is None else patience
                return await self._escalate(under_way, request, sweep, wait)
            choice = choose(holder, request)
            why = "emergency" if request.emergency else "on-demand"
            decision = Decision(
                account=sweep.account,
                user=holder.name,
                kind=request.kind,
                slot=request.slot,
                rule=rule.name,
                action=Action.ROTATE,
                credential_id=choice.old.credential_id,
                delete_first=choice.delete_first.credential_id if choice.delete_first else None,
                reason=f"{why} rotation of {choice.old.credential_id} requested by an operator",
            )
            if dry_run:
                return would(Step.PLAN, decision, f"would rotate: {decision.reason}")
            timings = (timedelta(0), request.hold) if request.emergency else rule.timings()
            return await self._engine.begin(
                decision, rule, kind, timings, sweep, emergency=request.emergency
            )

    async def _under_way(self, holder: Holder, request: Request) -> Rotation | None:
        """The unfinished rotation of the requested credential's holder, if any."""
        for rotation in await self._journal.list_active():
            same = (rotation.account, rotation.user, rotation.kind, rotation.slot)
            if same == (holder.account, holder.name, request.kind, request.slot):
                return rotation
        return None

    async def _escalate(
        self, under_way: Rotation, request: Request, sweep: Session, patience: timedelta
    ) -> Report:
        """Make the rotation under way for a leaked credential an emergency (``escalate``)
        and drive it: the leaked credential is deactivated at once."""
        reason = escalate(under_way, request, self._clock()).reason  # checked before waiting
        decision = Decision(
            account=under_way.account,
            user=under_way.user,
            kind=under_way.kind,
            slot=under_way.slot,
            rule=under_way.rule,
            action=Action.ROTATE,
            credential_id=request.credential_id,
            rotation_id=under_way.rotation_id,
            reason=reason,
        )
        if sweep.dry_run:
            return would(Step.PLAN, decision, f"would deactivate at once: {reason}")
        rotation = await self._driver.take_over(under_way.rotation_id, patience=patience)
        try:
            rotation = await self._journal.save(escalate(rotation, request, self._clock()))
        except RotatorError:
            await self._driver.release(rotation)
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
        return await self._engine.drive(
            rotation, self._config.rule(rotation.rule), sweep.kinds[rotation.kind], decision, sweep
        )

    async def _requested_holder(
        self, sweep: Session, request: Request, kind: CredentialKind
    ) -> Holder:
        """The holder an operator named: an IAM user, or (server certificates) one of the
        account's certificates the rules select."""
        assert request.user is not None
        if request.kind not in ACCOUNT_HELD:
            return await sweep.holder(request.user, kind, request.slot)
        rules = [r for r in self._config.rules if r.kind is request.kind]
        for holder in await kind.account_holders(sweep.account, rules):
            if holder.name == request.user:
                return holder
        raise InputError(f"no {request.kind} {request.user} is selected by the policy's rules")

    async def rollback(self, rotation_id: str) -> StepResult:
        """Roll back one rotation (see ``Rollback.rollback``); journalled and audited like any
        step. Raises ``NotFound``, ``LeaseLost`` (another worker is on it) or ``Refused``."""
        audit.bind(run_id=new_id("run"), dry_run=False)
        async with self._engine.session(dry_run=False) as sweep:
            audit.bind(account=sweep.account)
            rotation = await self._journal.get(rotation_id)
            rule = self._config.rule(rotation.rule)
            if rule is None:
                raise Refused(
                    f"rule {rotation.rule!r} of rotation {rotation_id} is no longer in the "
                    "policy; restore it so rotator knows the rotation's sink"
                )
            rotation = await self._driver.reacquire(rotation)
            steps = Rollback(
                journal=self._journal,
                kind=sweep.kinds[rotation.kind],
                sink=sweep.sink(rule),
                rule=rule,
                clock=self._clock,
            )
            try:
                result = await steps.rollback(rotation)
            except Refused as exc:
                audit.step_event(Step.ROLLBACK, Outcome.BLOCKED, rotation=rotation, reason=str(exc))
                raise
            finally:
                await self._driver.release(rotation)
            audit.step_event(
                Step.ROLLBACK, result.outcome, rotation=result.rotation, reason=result.reason
            )
            await self._journal.record_step(result.record(audit.current("run_id")))
            return result
