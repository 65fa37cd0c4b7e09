"""The steps of the two-slot protocol, each idempotent and journalled.

Every step first asks "is this already done?" (so a replay after a crash is harmless),
journals its intent before an irreversible call where the protocol needs one, and journals
the outcome after. Steps know the kind and the sink only through their ports.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from rotator import audit
from rotator.errors import (
    AccessDenied,
    DeleteConflict,
    IncompleteRecord,
    LeaseLost,
    NoSuchEntity,
    ProtocolViolation,
    Refused,
    RotatorError,
    SinkError,
    Transient,
    VerificationFailed,
    WrongIdentity,
)
from rotator.journal.base import Journal
from rotator.kinds.base import CreatesPerRule, CredentialKind, MakesMaterial, TracksLastUse
from rotator.model import (
    Credential,
    Outcome,
    Rotation,
    RotationState,
    Status,
    Step,
    StepRecord,
)
from rotator.policy import Rule
from rotator.rotation.own_key import OwnKey
from rotator.rotation.protocol import (
    EMERGENCY_DEACTIVATE,
    Transition,
    state_after_promote,
)
from rotator.sinks import where
from rotator.sinks.base import Fence, SecretEntry, SecretSink, SinkKey

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """What one step did. ``rotation`` is the record as journalled after the step."""

    rotation: Rotation
    step: Step
    outcome: Outcome
    reason: str = ""
    credential_id: str | None = None
    # A verify step that succeeded: seconds until the new credential answered everywhere.
    propagation_s: float | None = None

    @property
    def advanced(self) -> bool:
        return self.outcome in (Outcome.DONE, Outcome.ALREADY_DONE)

    def record(self, run_id: str) -> StepRecord:
        """The journal's copy of this outcome."""
        return StepRecord(
            rotation_id=self.rotation.rotation_id,
            at=self.rotation.updated_at,
            step=self.step,
            outcome=self.outcome,
            reason=self.reason,
            run_id=run_id,
            credential_id=self.credential_id,
        )


# How long a listing this drive made (or a change it made itself) stands in for asking IAM
# again: the steps of one drive follow each other within seconds, and a later sweep's drive
# starts with no view. Recovery after a crash always asks IAM.
FRESH = 5.0
# The deactivate step may stand on an older view of this drive (it holds the target's
# lease, so no rotator changed it): its own calls answer for a change made outside rotator
# (GetAccessKeyLastUsed and UpdateAccessKey fail with NoSuchEntity for a deleted key, and
# deactivating an inactive one changes nothing). Delete does not: it must see a
# reactivation, so its view is at most FRESH old (its own deactivation, at the latest).
DEACTIVATE_FRESH = 60.0


def _unguarded() -> None:
    """No lease to check (a step run outside ``Driver.drive``, e.g. in a test)."""


def required(rotation: Rotation, name: str, value: T | None) -> T:
    """``value``, a field the protocol guarantees in the rotation's state; a record without
    it (hand-edited, or written by a bug) is refused rather than guessed at."""
    if value is None:
        raise IncompleteRecord(rotation.rotation_id, str(rotation.state), name)
    return value


def sink_key(rotation: Rotation) -> SinkKey:
    return SinkKey(
        account=rotation.account, user=rotation.user, kind=rotation.kind, slot=rotation.slot
    )


def fence_of(journal: Journal, rotation: Rotation) -> Fence:
    """The fence ``rotation``'s sink writes carry: the journal's epoch and the lease's
    fence (0 without a lease: such a write loses to any fenced one)."""
    value = rotation.lease.fence if rotation.lease is not None else 0
    return Fence(epoch=journal.epoch, value=value, rotation_id=rotation.rotation_id)


class Steps:
    """Runs the protocol's steps for rotations of one kind into one sink. Every sink write
    carries the rotation's fence (``fence_of``): a worker whose lease was taken over while
    its write was on its way is refused by the sink (``LeaseLost``), not only by the
    journal."""

    def __init__(
        self,
        *,
        journal: Journal,
        kind: CredentialKind,
        sink: SecretSink,
        rule: Rule,
        clock: Callable[[], datetime],
        own: OwnKey | None = None,
    ) -> None:
        self._journal = journal
        self._own = own  # the key rotator signs with (``own_key``); None: not tracked
        self._kind = kind
        self._sink = sink
        self._rule = rule
        self._clock = clock
        self._row: Transition | None = None
        self._guard: Callable[[], None] = _unguarded
        # The holder's credentials as this drive last saw them (monotonic time, listing).
        self._view: tuple[float, list[Credential]] | None = None

    async def run(
        self, rotation: Rotation, row: Transition, *, guard: Callable[[], None] | None = None
    ) -> StepResult:
        """Run the step of protocol row ``row`` for ``rotation``; it may journal only the
        states the row allows, and calls ``guard`` (raising ``LeaseLost`` once this worker
        may no longer act) before every change to IAM or the sink. Raises
        ``rotator.errors`` on failure."""
        handlers = {
            Step.CREATE: self.create,
            Step.VERIFY: self.verify,
            Step.PROMOTE: self.promote,
            Step.DEACTIVATE: self.deactivate,
            Step.DELETE: self.delete,
        }
        self._row, self._guard = row, guard or _unguarded
        try:
            if row is EMERGENCY_DEACTIVATE:
                return await self._deactivate_leaked(rotation)
            return await handlers[row.step](rotation)
        finally:
            self._row, self._guard = None, _unguarded

    async def _save(self, rotation: Rotation, **changes: object) -> Rotation:
        """Journal ``changes``; a state the current protocol row does not allow is refused
        before anything is written."""
        updated = rotation.evolve(updated_at=self._clock(), **changes)
        row = self._row
        if row is not None and not row.allows(updated.state):
            raise ProtocolViolation(rotation.rotation_id, row.name, updated.state)
        return await self._journal.save(updated)

    def seed(self, listed: Sequence[Credential]) -> None:
        """What IAM held for the rotation's holder a moment ago (the sweep's last look
        before it journalled the rotation): the first step need not ask again."""
        self._view = (time.monotonic(), list(listed))

    async def _list(self, rotation: Rotation, fresh: float = FRESH) -> list[Credential]:
        """The holder's credentials: this drive's own view while it is fresh (it listed, or
        changed them itself, less than ``fresh`` seconds ago), else IAM's."""
        view = self._view
        if view is not None and time.monotonic() - view[0] < fresh:
            return list(view[1])
        listed = await self._kind.list(rotation.user, rotation.slot)
        self._view = (time.monotonic(), list(listed))
        return listed

    def _changed(self, credential_id: str, status: Status | None) -> None:
        """Keep the view true after this drive changed a credential (None: deleted)."""
        if self._view is None:
            return
        kept: list[Credential] = []
        for cred in self._view[1]:
            if cred.credential_id != credential_id:
                kept.append(cred)
            elif status is not None:
                kept.append(replace(cred, status=status))
        self._view = (time.monotonic(), kept)

    def _made(self, rotation: Rotation, entry: SecretEntry) -> None:
        if self._view is not None:
            made = Credential(
                kind=rotation.kind,
                credential_id=entry.credential_id,
                status=Status.ACTIVE,
                created=entry.created_at,
                slot=rotation.slot,
            )
            self._view = (time.monotonic(), [*self._view[1], made])

    async def _gone(self, rotation: Rotation, credential_id: str) -> bool:
        """Whether IAM, asked now, no longer lists the credential."""
        self._view = None
        return await self._find(rotation, credential_id) is None

    async def _find(
        self, rotation: Rotation, credential_id: str | None, fresh: float = FRESH
    ) -> Credential | None:
        if credential_id is None:
            return None
        listed = await self._list(rotation, fresh)
        return next((c for c in listed if c.credential_id == credential_id), None)

    # -- create -------------------------------------------------------------------------

    async def create(self, rotation: Rotation) -> StepResult:
        """Make room, journal the intent, adopt a create that happened before a crash or
        delete its orphan, then create the credential and store its secret as pending."""
        resumed = rotation.state is not RotationState.PLANNED
        # Preflight: a sink that cannot take the secret fails the rotation (SinkError)
        # before IAM is changed at all, rather than after a key exists.
        await self._sink.check(sink_key(rotation))
        if not resumed:
            await self._make_room(rotation)
            listed = await self._list(rotation)
            rotation = await self._save(
                rotation,
                state=RotationState.CREATING,
                creating_at=self._clock(),
                known_ids=tuple(c.credential_id for c in listed),
            )
        key = sink_key(rotation)
        pending = (await self._sink.read(key)).pending
        adopted: Credential | None = None
        orphans: list[str] = []
        if resumed:  # a create may have run before a crash: see what IAM holds now
            adopted, orphans = await self._reconcile(rotation, pending)
        notes = [f"deleted orphan {o} (its secret never reached the sink)" for o in orphans]
        if adopted is not None and pending is not None:
            entry = pending.with_id(adopted.credential_id)
            self._guard()
            await self._sink.put_pending(key, entry, fence_of(self._journal, rotation))
            outcome = Outcome.ALREADY_DONE
            notes.insert(0, f"adopted {adopted.credential_id} created before a restart")
        else:
            material = await self._material(rotation, pending)
            self._guard()
            if material is None and isinstance(self._kind, CreatesPerRule):
                entry = await self._kind.create_for(self._rule, rotation.user, rotation.slot)
            else:
                entry = await self._kind.create(rotation.user, material, rotation.slot)
            await self._store_new(rotation, key, entry, made_by_iam=material is None)
            self._made(rotation, entry)
            outcome = Outcome.DONE
            notes.insert(0, f"secret stored as pending in {where(self._rule, self._sink, key)}")
        rotation = await self._save(
            rotation, state=RotationState.CREATED, new_credential_id=entry.credential_id
        )
        return StepResult(
            rotation=rotation,
            step=Step.CREATE,
            outcome=outcome,
            reason="; ".join(notes),
            credential_id=entry.credential_id,
        )

    async def _material(
        self, rotation: Rotation, pending: SecretEntry | None
    ) -> SecretEntry | None:
        """The secret material to create with: material rotator made and stored pending
        before a crash is used again (a console password may already be applied); else new
        material, stored pending before IAM sees it. None when IAM makes the secret."""
        if not isinstance(self._kind, MakesMaterial):
            return None
        if pending is not None and pending.kind is rotation.kind and self._kind.reusable(pending):
            return pending
        material = await self._kind.make_material(self._rule, rotation.user)
        self._guard()
        await self._sink.put_pending(
            sink_key(rotation), material, fence_of(self._journal, rotation)
        )
        return material

    async def _store_new(
        self, rotation: Rotation, key: SinkKey, entry: SecretEntry, *, made_by_iam: bool
    ) -> None:
        """Store a new credential's secret as pending, before anything else. If that fails
        (the sink refuses, or this worker lost its lease) while the secret IAM made exists
        only in memory, the credential is deleted at once (compensation) rather than left
        active with a secret nobody has; the user is left as before."""
        try:
            self._guard()
            await self._sink.put_pending(key, entry, fence_of(self._journal, rotation))
        except Exception as exc:
            if not made_by_iam:
                raise  # rotator's own material is in the sink already: a resume adopts it
            await self._compensate(rotation, entry.credential_id, exc)
            raise

    async def _compensate(self, rotation: Rotation, credential_id: str, cause: Exception) -> None:
        """Deactivate and delete ``credential_id``, whose secret could not be stored. If
        even that fails the rotation is left unfinished (``Transient``), so the next
        sweep's reconciliation deletes the orphan."""
        try:
            with contextlib.suppress(NoSuchEntity):  # already gone (another worker's orphan)
                await self._kind.set_status(rotation.user, credential_id, Status.INACTIVE)
                await self._kind.delete(rotation.user, credential_id)
        except RotatorError as exc:
            raise Transient(
                "compensate",
                "CompensationFailed",
                f"the secret of {credential_id} could not be stored ({cause}) and deleting "
                f"it failed too ({exc}); the next sweep deletes it as an orphan",
                {"user": rotation.user, "credential_id": credential_id},
            ) from None
        audit.get_logger().warning(
            audit.ROTATION_COMPENSATED,
            rotation_id=rotation.rotation_id,
            user=rotation.user,
            kind=str(rotation.kind),
            credential_id=credential_id,
            reason=f"its secret could not be stored ({cause}): deleted at once",
        )
        if isinstance(cause, LeaseLost):
            return
        where = self._sink.location(sink_key(rotation))
        raise SinkError(
            f"could not store the secret of {credential_id} in {where} ({cause}); "
            f"{credential_id} was deleted at once and the user is as before"
        ) from None

    async def _make_room(self, rotation: Rotation) -> None:
        """Delete the inactive credential the plan chose, after checking it still is."""
        if rotation.delete_first is None:
            return
        found = await self._find(rotation, rotation.delete_first)
        if found is None:
            return
        if found.active:
            raise Refused(  # never delete an active credential to make room
                f"{rotation.delete_first} became active since it was planned for deletion"
            )
        self._guard()
        await self._kind.delete(rotation.user, rotation.delete_first)
        self._changed(rotation.delete_first, None)

    async def _reconcile(
        self, rotation: Rotation, pending: SecretEntry | None
    ) -> tuple[Credential | None, list[str]]:
        """Credentials created since the intent: the one matching the pending secret is
        adopted; any other is an orphan whose secret is lost, and is deleted."""
        known = set(rotation.known_ids)
        listed = await self._kind.list(rotation.user, rotation.slot)  # always fresh: recovery
        self._view = None
        adopted: Credential | None = None
        orphans: list[str] = []
        for cred in listed:
            if cred.credential_id in known:
                continue
            if pending is not None and self._kind.matches(cred, pending):
                adopted = cred
                continue
            self._guard()
            if cred.active:
                await self._kind.set_status(rotation.user, cred.credential_id, Status.INACTIVE)
            await self._kind.delete(rotation.user, cred.credential_id)
            orphans.append(cred.credential_id)
        return adopted, orphans

    # -- verify / promote ---------------------------------------------------------------

    async def verify(self, rotation: Rotation) -> StepResult:
        """Prove the new credential works; its secret is read back from the sink."""
        key = sink_key(rotation)
        doc = await self._sink.read(key)
        new_id = required(rotation, "new_credential_id", rotation.new_credential_id)
        entry = doc.find(new_id)
        if entry is None:
            raise SinkError(f"the secret of {new_id} is missing from {key}")
        started = time.monotonic()
        try:
            await self._kind.verify(rotation.user, entry)
        except WrongIdentity:
            raise
        except VerificationFailed as exc:  # not working yet: IAM may still be propagating
            return StepResult(
                rotation=rotation,
                step=Step.VERIFY,
                outcome=Outcome.RETRY,
                reason=str(exc),
                credential_id=rotation.new_credential_id,
            )
        propagation = round(time.monotonic() - started, 3)
        rotation = await self._save(rotation, state=RotationState.VERIFIED)
        return StepResult(
            rotation=rotation,
            step=Step.VERIFY,
            outcome=Outcome.DONE,
            credential_id=rotation.new_credential_id,
            propagation_s=propagation,
        )

    async def promote(self, rotation: Rotation) -> StepResult:
        """The sink's current becomes the new secret; the old one stays as previous."""
        new_id = required(rotation, "new_credential_id", rotation.new_credential_id)
        self._guard()
        key = sink_key(rotation)
        await self._sink.promote(key, new_id, fence_of(self._journal, rotation))
        own = self._own
        if own is not None and await own.is_old_key_of(rotation):
            # Before the promotion time is stamped: rotator's own calls with the old key
            # were all sent before ``promoted_at`` (see ``own_key``).
            await own.follow(rotation, (await self._sink.read(key)).find(new_id))
        now = self._clock()
        state = state_after_promote(rotation)
        rotation = await self._save(
            rotation,
            state=state,
            promoted_at=now,
            finished_at=now if state.finished else None,
        )
        return StepResult(
            rotation=rotation,
            step=Step.PROMOTE,
            outcome=Outcome.DONE,
            credential_id=rotation.new_credential_id,
        )

    # -- deactivate / delete ------------------------------------------------------------

    async def deactivate(self, rotation: Rotation) -> StepResult:
        """Deactivate the old credential unless it was used after the promotion (an
        emergency deactivates the leaked credential first, whoever uses it)."""
        old = await self._find(rotation, rotation.old_credential_id, DEACTIVATE_FRESH)
        now = self._clock()
        if old is None:
            rotation = await self._save(
                rotation, state=RotationState.COMPLETED, finished_at=now, deactivated_at=now
            )
            return self._result(rotation, Step.DEACTIVATE, Outcome.ALREADY_DONE, "already deleted")
        if not old.active:
            rotation = await self._save(
                rotation, state=RotationState.DEACTIVATED, deactivated_at=now, held_since=None
            )
            return self._result(rotation, Step.DEACTIVATE, Outcome.ALREADY_DONE, "already inactive")
        own = self._own
        if own is not None and not rotation.emergency and await own.is_old_key_of(rotation):
            reason = (
                f"rotator itself still signs with the old key {old.credential_id} (its "
                "credentials do not come from this rotation's sink): point them at the new "
                "key, or deactivating the old one would lock rotator out"
            )
            rotation = await self._save(
                rotation, held_since=rotation.held_since or now, reason=reason
            )
            return self._result(rotation, Step.DEACTIVATE, Outcome.HELD, reason)
        used = None
        try:
            if isinstance(self._kind, TracksLastUse):
                used = await self._kind.last_used(rotation.user, old.credential_id)
        except NoSuchEntity:  # deleted since this drive looked
            return await self._already_deleted(rotation)
        except AccessDenied:  # IAM's answer for an access key that no longer exists, too
            if not await self._gone(rotation, old.credential_id):
                raise
            return await self._already_deleted(rotation)
        promoted_at = required(rotation, "promoted_at", rotation.promoted_at)
        done_reason = ""
        if used is not None and used > promoted_at and own is not None:
            done_reason = await own.own_use(rotation, used, promoted_at)
        if used is not None and used > promoted_at and not done_reason:
            reason = (
                f"old credential used at {used:%Y-%m-%d %H:%M:%S}Z, after the promotion at "
                f"{promoted_at:%Y-%m-%d %H:%M:%S}Z: consumers have not switched"
            )
            reason, breaks = self._deadline(rotation, old, now, reason)
            if not breaks:
                rotation = await self._save(
                    rotation, held_since=rotation.held_since or now, reason=reason
                )
                return self._result(rotation, Step.DEACTIVATE, Outcome.HELD, reason)
            done_reason = reason
        self._guard()
        try:
            await self._kind.set_status(rotation.user, old.credential_id, Status.INACTIVE)
        except NoSuchEntity:  # deleted since this drive looked
            return await self._already_deleted(rotation)
        self._changed(old.credential_id, Status.INACTIVE)
        rotation = await self._save(
            rotation, state=RotationState.DEACTIVATED, deactivated_at=now, held_since=None
        )
        return self._result(rotation, Step.DEACTIVATE, Outcome.DONE, done_reason)

    def _deadline(
        self, rotation: Rotation, old: Credential, now: datetime, reason: str
    ) -> tuple[str, bool]:
        """A held old credential against its rule's ``deadline``: the reason, told how
        near the deadline is once within ``deadline_warning`` (with a ``rotation.deadline``
        warning), and whether to deactivate it now although it is used (the deadline has
        come and the rule says ``on_deadline = "deactivate"``)."""
        rule = self._rule
        if rule.deadline is None or rotation.emergency:
            return reason, False
        at = old.created + rule.deadline
        if now < at - rule.deadline_warning:
            return reason, False
        passed = now >= at
        breaks = passed and rule.on_deadline == "deactivate"
        if breaks:
            reason = f"deadline {at:%Y-%m-%d %H:%M}Z reached, deactivated although {reason}"
        elif passed:
            reason += (
                f"; deadline {at:%Y-%m-%d %H:%M}Z passed and on_deadline = alert: it stays "
                "active until consumers switch (or deactivate it by hand)"
            )
        else:
            then = "deactivated" if rule.on_deadline == "deactivate" else "only alerted"
            reason += f"; deadline {at:%Y-%m-%d %H:%M}Z is near: then it is {then}"
        level = "error" if passed and not breaks else "warning"
        getattr(audit.get_logger(), level)(
            audit.ROTATION_DEADLINE,
            rotation_id=rotation.rotation_id,
            user=rotation.user,
            kind=str(rotation.kind),
            credential_id=old.credential_id,
            deadline=at.isoformat(),
            on_deadline=rule.on_deadline,
            reason=reason,
        )
        return reason, breaks

    async def _already_deleted(self, rotation: Rotation) -> StepResult:
        now = self._clock()
        rotation = await self._save(
            rotation, state=RotationState.COMPLETED, finished_at=now, deactivated_at=now
        )
        return self._result(rotation, Step.DEACTIVATE, Outcome.ALREADY_DONE, "already deleted")

    async def _deactivate_leaked(self, rotation: Rotation) -> StepResult:
        old = await self._find(rotation, rotation.old_credential_id)
        outcome = Outcome.ALREADY_DONE
        if old is not None and old.active:
            self._guard()
            await self._kind.set_status(rotation.user, old.credential_id, Status.INACTIVE)
            self._changed(old.credential_id, Status.INACTIVE)
            outcome = Outcome.DONE
        changes: dict[str, object] = {"deactivated_at": self._clock()}
        if rotation.state is RotationState.PROMOTED:  # escalated after the promotion
            changes.update(state=RotationState.DEACTIVATED, held_since=None)
        rotation = await self._save(rotation, **changes)
        reason = "emergency: deactivated before the new credential is made"
        if rotation.new_credential_id is not None:
            reason = "emergency: deactivated at once, the rotation already under way"
        if old is None:
            reason = "emergency: the credential is already gone"
        return self._result(rotation, Step.DEACTIVATE, outcome, reason)

    async def delete(self, rotation: Rotation) -> StepResult:
        """Delete the old credential, which must still be inactive. IAM's DeleteConflict
        (still attached, e.g. a certificate on a load balancer) holds the step."""
        old = await self._find(rotation, rotation.old_credential_id)
        now = self._clock()
        if old is not None and old.active:
            reason = "old credential was reactivated after rotator deactivated it; not deleting"
            rotation = await self._save(
                rotation, held_since=rotation.held_since or now, reason=reason
            )
            return self._result(rotation, Step.DELETE, Outcome.HELD, reason)
        if old is not None:
            try:
                self._guard()
                await self._kind.delete(rotation.user, old.credential_id)
                self._changed(old.credential_id, None)
            except DeleteConflict as exc:
                reason = f"still in use, not deleted: {exc.aws_message or exc.code}"
                rotation = await self._save(
                    rotation, held_since=rotation.held_since or now, reason=reason
                )
                return self._result(rotation, Step.DELETE, Outcome.HELD, reason)
        rotation = await self._save(
            rotation, state=RotationState.COMPLETED, finished_at=now, held_since=None
        )
        outcome, reason = Outcome.DONE, ""
        if old is None and rotation.delete_first == rotation.old_credential_id:
            # An emergency at IAM's limit: this rotation's create deleted it to make room.
            reason = f"{rotation.old_credential_id} was deleted by this rotation's create step"
        elif old is None:
            outcome, reason = Outcome.ALREADY_DONE, "already deleted"
        return self._result(rotation, Step.DELETE, outcome, reason)

    @staticmethod
    def _result(rotation: Rotation, step: Step, outcome: Outcome, reason: str) -> StepResult:
        return StepResult(
            rotation=rotation,
            step=step,
            outcome=outcome,
            reason=reason,
            credential_id=rotation.old_credential_id,
        )
