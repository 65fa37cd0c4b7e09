"""An operator's requests, beside the sweeps: rotate one credential now (an emergency first
deactivates it, or escalates the rotation already retiring it) and roll one rotation back.
Both go through ``Rotations``, so they are leased, journalled and audited exactly like a
sweep's work."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from rotator import audit
from rotator.errors import Conflict, InputError, Refused
from rotator.kinds import AccountHolders, CredentialKind
from rotator.model import Action, Decision, Holder, Kind, Rotation, Step, new_id
from rotator.rotation.emergency import (
    Request,
    access_key_id_problem,
    choose,
    escalate,
    pick_rule,
)
from rotator.rotation.preview import preview
from rotator.rotation.report import Report, Result, would
from rotator.rotation.rotations import Rotations, new_rotation
from rotator.rotation.session import Session
from rotator.rotation.steps import StepResult


class Requests:
    """An operator's requests on one policy."""

    def __init__(self, rotations: Rotations) -> None:
        self._rotations = rotations
        self._config = rotations.config

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
        if access_key_id is not None and (problem := access_key_id_problem(access_key_id)):
            raise InputError(f"access key ID {problem}")
        audit.bind(run_id=new_id("run"), dry_run=dry_run)
        async with self._rotations.session(dry_run=dry_run) as session:
            audit.bind(account=session.account)
            if access_key_id is not None:
                owner = await session.owner_of(access_key_id)
                if request.user is not None and request.user != owner:
                    raise InputError(
                        f"access key {access_key_id} belongs to {owner}, not {request.user}"
                    )
                request = replace(
                    request, user=owner, kind=Kind.ACCESS_KEY, credential_id=access_key_id
                )
            if request.user is None:
                raise InputError("name the credential: --access-key-id, or --user and --kind")
            if not any(r.kind is request.kind for r in self._config.rules):
                raise InputError(f"no rule of kind {request.kind} in the policy")
            kind = session.kind(request.kind)
            target = (session.account, request.user, request.kind, request.slot)
            fence = await self._rotations.journal.target_fence(target)  # before IAM is read
            holder = await self._requested_holder(session, request.user, request, kind)
            rule = pick_rule(list(self._config.rules), holder, request)
            if request.emergency:
                await self._not_own_key(session, request)
            if request.emergency and (under_way := await self._under_way(holder, request)):
                wait = self._config.journal.lease_ttl if patience is None else patience
                return await self._escalate(under_way, request, session, wait)
            choice = choose(holder, request)
            why = "emergency" if request.emergency else "on-demand"
            decision = Decision(
                account=session.account,
                user=holder.name,
                kind=request.kind,
                slot=request.slot,
                rule=rule.name,
                action=Action.ROTATE,
                credential_id=choice.old.credential_id,
                delete_first=choice.delete_first.credential_id if choice.delete_first else None,
                reason=f"{why} rotation of {choice.old.credential_id} requested by an operator",
            )
            timings = (timedelta(0), request.hold) if request.emergency else rule.timings()
            if dry_run:
                now = self._rotations.clock()
                rotation = new_rotation(decision, rule, timings, now, emergency=request.emergency)
                steps = preview(rotation, rule, session.sink(rule), now)
                reason = f"would rotate: {decision.reason}"
                return would(Step.PLAN, decision, Result.WOULD_ROTATE, reason, steps)
            try:
                return await self._rotations.start(
                    decision,
                    rule,
                    session,
                    timings,
                    emergency=request.emergency,
                    expect_fence=fence,
                )
            except Conflict as exc:
                raise Refused(f"{exc}; finish or roll it back first") from None

    @staticmethod
    async def _not_own_key(session: Session, request: Request) -> None:
        """Refuse an emergency for the access key rotator itself signs with: it deactivates
        that key first, which would lock rotator out before it made the new one."""
        if request.kind is not Kind.ACCESS_KEY or request.credential_id is None:
            return
        if await session.own.current() == request.credential_id:
            raise InputError(
                f"rotator itself signs with {request.credential_id}: an emergency deactivates "
                "it first, which would lock rotator out before it made the new key; run the "
                "emergency with other credentials (another profile, a role)"
            )

    async def _under_way(self, holder: Holder, request: Request) -> Rotation | None:
        """The unfinished rotation of the requested credential's holder, if any."""
        for rotation in await self._rotations.journal.list_active():
            same = (rotation.account, rotation.user, rotation.kind, rotation.slot)
            if same == (holder.account, holder.name, request.kind, request.slot):
                return rotation
        return None

    async def _escalate(
        self, under_way: Rotation, request: Request, session: Session, patience: timedelta
    ) -> Report:
        """Make the rotation under way for a leaked credential an emergency and drive it."""
        now = self._rotations.clock()
        escalated = escalate(under_way, request, now)  # checked first
        reason = escalated.reason
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
        if session.dry_run:
            rule = self._config.rule(under_way.rule)
            steps = () if rule is None else preview(escalated, rule, session.sink(rule), now)
            why = f"would deactivate at once: {reason}"
            return would(Step.PLAN, decision, Result.WOULD_ADVANCE, why, steps)
        return await self._rotations.escalate(under_way, request, session, decision, patience)

    async def _requested_holder(
        self, session: Session, user: str, request: Request, kind: CredentialKind
    ) -> Holder:
        """The holder an operator named: an IAM user, or (server certificates) one of the
        account's certificates the rules select."""
        if not isinstance(kind, AccountHolders):
            return await session.holder(user, kind, request.slot)
        rules = [r for r in self._config.rules if r.kind is request.kind]
        for holder in await kind.account_holders(session.account, rules):
            if holder.name == user:
                return holder
        raise InputError(f"no {request.kind} {user} is selected by the policy's rules")

    async def rollback(self, rotation_id: str) -> StepResult:
        """Roll back one rotation (``Rotations.roll_back``). Raises ``NotFound``,
        ``LeaseLost`` (another worker is on it) or ``Refused``."""
        audit.bind(run_id=new_id("run"), dry_run=False)
        async with self._rotations.session(dry_run=False) as session:
            audit.bind(account=session.account)
            return await self._rotations.roll_back(rotation_id, session)
