"""The self-rotation guard against the in-memory IAM twin, with a clock the test moves:
rotator's own use of the old key (up to the promotion plus the margin, once it signs with
the new key) does not hold the deactivate step; any other use does, as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotator.aws import Credentials
from rotator.kinds.access_key import AccessKeys
from rotator.model import Outcome, Rotation, RotationState, Step
from rotator.rotation.own_key import OwnKey
from rotator.testing import MemoryAws, MemoryIam
from tests.kinds.harness import Harness, context, rule

MARGIN = timedelta(seconds=40)
T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def _setup(*, own_is_old: bool) -> tuple[Harness, MemoryIam, MemoryAws, str, Clock]:
    clock = Clock()
    iam = MemoryIam(account="123456789012", clock=clock)
    await iam.create_user(UserName="laptop")
    made = (await iam.create_access_key(UserName="laptop"))["AccessKey"]
    other = (await iam.create_access_key(UserName="laptop"))["AccessKey"]
    await iam.delete_access_key(UserName="laptop", AccessKeyId=other["AccessKeyId"])
    aws = MemoryAws(iam)
    signer = made if own_is_old else other  # other: some key that is not rotated
    aws.switch_to(
        Credentials(
            access_key_id=signer["AccessKeyId"], secret_access_key=signer["SecretAccessKey"]
        )
    )
    harness = Harness(
        kind=AccessKeys(context(iam)),
        rule=rule(
            name="laptop",
            kind="access-key",
            max_age="90d",
            deactivate_after="1h",
            delete_after="0s",
        ),
        clock=clock,
        own=OwnKey(aws, MARGIN),
    )
    return harness, iam, aws, str(made["AccessKeyId"]), clock


async def _promoted(harness: Harness, old: str) -> tuple[Rotation, datetime]:
    rotation = await harness.start("laptop", old)
    rotation, _ = await harness.drive(rotation)
    assert rotation.state is RotationState.PROMOTED
    assert rotation.promoted_at is not None
    return rotation, rotation.promoted_at


@pytest.mark.parametrize(
    ("own_is_old", "used_after", "outcome"),
    [
        (True, timedelta(seconds=1), Outcome.DONE),  # rotator's own call, in flight
        (True, MARGIN, Outcome.DONE),
        (True, MARGIN + timedelta(seconds=1), Outcome.HELD),  # an application's
        (False, timedelta(seconds=1), Outcome.HELD),  # not rotator's key: as before
    ],
)
async def test_the_guard_discounts_only_rotators_own_use(
    own_is_old: bool, used_after: timedelta, outcome: Outcome
) -> None:
    harness, iam, aws, old, clock = await _setup(own_is_old=own_is_old)
    rotation, promoted_at = await _promoted(harness, old)
    new = rotation.new_credential_id
    assert (await aws.own_access_key_id() == new) is own_is_old  # switched at the promotion
    iam.use_access_key(old, promoted_at + used_after)
    clock.now += timedelta(hours=2)
    rotation, done = await harness.drive(rotation)
    deactivate = next(r for r in done if r.step is Step.DEACTIVATE)
    assert deactivate.outcome is outcome, deactivate.reason
    if outcome is Outcome.DONE:
        assert "by rotator itself" in deactivate.reason
        assert rotation.state is RotationState.COMPLETED
    else:
        assert "consumers have not switched" in deactivate.reason


async def test_a_rotator_still_signing_with_the_old_key_holds() -> None:
    """A later run whose credentials still give the old key (not the sink's new one)."""
    harness, iam, aws, old, clock = await _setup(own_is_old=True)
    rotation, _ = await _promoted(harness, old)
    key = next(k for u in iam.users.values() for k in u.keys if k.key_id == old)
    aws.switch_to(Credentials(access_key_id=old, secret_access_key=key.secret))
    clock.now += timedelta(hours=2)
    rotation, done = await harness.drive(rotation)
    assert done[-1].outcome is Outcome.HELD
    assert "rotator itself still signs with the old key" in done[-1].reason
    assert rotation.state is RotationState.PROMOTED
