"""Rolling a rotation back, on an operator's request (``rotator rollback``): the old
credential is reactivated while it still exists and the sink's previous secret becomes
current again. Not a step of the protocol, so not in ``Steps.run``; it shares the steps'
journal, kind and sink handling."""

from __future__ import annotations

from rotator.errors import Refused
from rotator.model import Outcome, Rotation, RotationState, Status, Step
from rotator.rotation.steps import StepResult, Steps, sink_key


class Rollback(Steps):
    """``Steps`` plus the operator's way back."""

    async def rollback(self, rotation: Rotation) -> StepResult:
        """Reactivate the old credential while it exists and make the sink's previous
        secret current again. The new credential stays active: consumers may already use
        it. Raises ``Refused`` if there is nothing (left) to roll back to."""
        if rotation.state is RotationState.ROLLED_BACK:
            return self._result(rotation, Step.ROLLBACK, Outcome.ALREADY_DONE, "")
        old_id = rotation.old_credential_id
        if rotation.promoted_at is None or old_id is None:
            raise Refused(
                f"rotation {rotation.rotation_id} ({rotation.state}) never promoted a new "
                "credential: consumers still use the old one; nothing to roll back"
            )
        old = await self._find(rotation, old_id)
        if old is None:
            raise Refused(
                f"the old credential {old_id} of rotation {rotation.rotation_id} is deleted: "
                "rollback is no longer possible"
            )
        if not old.active:
            await self._kind.set_status(rotation.user, old_id, Status.ACTIVE)
        key = sink_key(rotation)
        doc = await self._sink.read(key)
        if doc.current is not None and doc.current.credential_id == old_id:
            note = f"{old_id} is active and already the sink's current secret"
        elif doc.previous is not None and doc.previous.credential_id == old_id:
            await self._sink.rollback(key, old_id)
            note = f"{old_id} is active and the sink's current secret again"
        else:
            note = (
                f"{old_id} is active again; the sink holds no secret for it (it predates "
                "rotator), so consumers that kept it work again"
            )
        note += f"; {rotation.new_credential_id} stays active until you deactivate it"
        now = self._clock()
        rotation = await self._save(
            rotation,
            state=RotationState.ROLLED_BACK,
            finished_at=now,
            held_since=None,
            reason="rolled back by an operator",
        )
        return self._result(rotation, Step.ROLLBACK, Outcome.DONE, note)
