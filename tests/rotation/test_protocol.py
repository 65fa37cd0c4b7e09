"""The protocol table (``rotator.rotation.protocol.TABLE``) is authoritative.

Parametrized over the table: every unfinished rotation has exactly one next row; no row
leads to a dead end; due times are what the docs say. Then the steps themselves, on the
in-memory twins (IAM, journal, sink): walking a rotation through the protocol every step
lands in a state its row allows, and a step that reports any other state is refused —
nothing illegal reaches the journal and the rotation fails with the reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from rotator.errors import ProtocolViolation
from rotator.journal.memory import MemoryJournal
from rotator.kinds import REGISTRY, KindContext
from rotator.kinds.access_key import AccessKeyRule
from rotator.model import Kind, Lease, Outcome, Rotation, RotationState, Status, Step
from rotator.policy import MemorySinkConfig
from rotator.rotation.driver import Driver
from rotator.rotation.protocol import (
    CREATE,
    DEACTIVATE,
    DELETE,
    EMERGENCY_DEACTIVATE,
    PROMOTE,
    ROLLBACK,
    TABLE,
    VERIFY,
    Transition,
    next_step,
    transition,
)
from rotator.rotation.steps import StepResult, Steps
from rotator.settings import RetrySettings, VerifySettings
from rotator.sinks.memory import MemorySink
from rotator.testing import MemoryAws, MemoryIam

S = RotationState
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
UNFINISHED = [s for s in RotationState if not s.finished]
USER = "ci-app"
OWNER = "test-worker"


def rotation(state: RotationState, **changes: object) -> Rotation:
    base = Rotation.start(
        account="123456789012",
        user=USER,
        kind=Kind.ACCESS_KEY,
        rule="keys",
        now=NOW,
        old_credential_id="AKIAOLD",
        deactivate_after=timedelta(days=7),
        delete_after=timedelta(days=3),
    )
    return base.evolve(state=state, **changes)


# -- the table, as data ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "emergency", "deactivated"),
    list(itertools.product(UNFINISHED, [False, True], [False, True])),
)
def test_every_unfinished_rotation_has_exactly_one_next_row(
    state: RotationState, emergency: bool, deactivated: bool
) -> None:
    r = rotation(
        state,
        emergency=emergency,
        promoted_at=NOW,
        deactivated_at=NOW if deactivated else None,
    )
    rows = [row for row in TABLE if state in row.leaves and row.applies(r)]
    assert rows, f"{state} has no next step"
    assert transition(r) is rows[0]
    if emergency and not deactivated and state in EMERGENCY_DEACTIVATE.leaves:
        assert rows[0] is EMERGENCY_DEACTIVATE, "a leaked credential is deactivated first"
        assert len(rows) == 2, "then the rotation goes on from where it was"
    else:
        assert len(rows) == 1, f"{state} is claimed by {[r.name for r in rows]}"


@pytest.mark.parametrize("row", [*TABLE, ROLLBACK], ids=lambda row: row.name)
def test_no_row_leads_to_a_dead_end(row: Transition) -> None:
    """Every state a step may reach is finished, or some row leaves it."""
    left = set().union(*(r.leaves for r in TABLE))
    for state in row.reaches:
        assert state.finished or state in left, f"{row.name} may strand a rotation in {state}"
    assert row.allows(S.FAILED), "any step may fail a rotation"


def test_finished_rotations_have_no_next_step() -> None:
    for state in RotationState:
        if state.finished:
            assert next_step(rotation(state)) is None


@pytest.mark.parametrize(
    ("r", "row", "due"),
    [
        (rotation(S.PLANNED), CREATE, NOW),
        (rotation(S.CREATED), VERIFY, NOW),
        (rotation(S.VERIFIED), PROMOTE, NOW),
        (rotation(S.PROMOTED, promoted_at=NOW), DEACTIVATE, NOW + timedelta(days=7)),
        (rotation(S.DEACTIVATED, deactivated_at=NOW), DELETE, NOW + timedelta(days=3)),
        (rotation(S.VERIFIED, emergency=True), EMERGENCY_DEACTIVATE, NOW),
        (  # an emergency's hold runs from the promotion
            rotation(
                S.DEACTIVATED,
                emergency=True,
                deactivated_at=NOW - timedelta(days=1),
                promoted_at=NOW,
            ),
            DELETE,
            NOW + timedelta(days=3),
        ),
    ],
    ids=["create", "verify", "promote", "deactivate", "delete", "emergency", "hold"],
)
def test_due_times(r: Rotation, row: Transition, due: datetime) -> None:
    found = next_step(r)
    assert found is not None
    assert (found.transition, found.at) == (row, due)


# -- the steps, on the in-memory twins ------------------------------------------------------


class World:
    """A twin IAM with one user holding one old key, a journal, a sink and the steps."""

    def __init__(self) -> None:
        self.iam = MemoryIam()
        self.journal = MemoryJournal()
        self.sink = MemorySink(MemorySinkConfig(type="memory"))
        ctx = KindContext(
            iam=self.iam,
            iam_once=self.iam,
            aws=MemoryAws(self.iam),
            account=self.iam.account,
            verify=VerifySettings(attempts=1, initial_delay=timedelta(0)),
            sink=lambda rule: self.sink,
        )
        self.kind = REGISTRY[Kind.ACCESS_KEY].build(ctx)
        self.rule = AccessKeyRule.model_validate(
            {"name": "keys", "kind": "access-key", "sink": {"type": "memory"}}
        )
        self.steps = Steps(
            journal=self.journal,
            kind=self.kind,
            sink=self.sink,
            rule=self.rule,
            clock=lambda: datetime.now(UTC),
        )
        self.driver = Driver(
            journal=self.journal,
            owner=OWNER,
            lease_ttl=timedelta(minutes=5),
            retry=RetrySettings(attempts=1),
            clock=lambda: datetime.now(UTC),
        )

    async def start(self, *, emergency: bool) -> Rotation:
        await self.iam.create_user(UserName=USER)
        old = (await self.iam.create_access_key(UserName=USER))["AccessKey"]["AccessKeyId"]
        now = datetime.now(UTC)
        r = Rotation.start(
            account=self.iam.account,
            user=USER,
            kind=Kind.ACCESS_KEY,
            rule="keys",
            now=now,
            old_credential_id=old,
            emergency=emergency,
        ).evolve(lease=Lease(owner=OWNER, expires_at=now + timedelta(minutes=5), fence=1))
        return await self.journal.add(r)


@pytest.mark.parametrize("emergency", [False, True], ids=["normal", "emergency"])
async def test_walking_the_protocol_every_step_lands_where_its_row_allows(
    emergency: bool,
) -> None:
    world = World()
    r = await world.start(emergency=emergency)
    taken: list[tuple[str, RotationState]] = []
    while (due := next_step(r)) is not None:
        r = await world.driver.reacquire(r)
        result = await world.steps.run(r, due.transition)
        assert due.transition.allows(result.rotation.state), (due.transition.name, result)
        assert result.outcome in (Outcome.DONE, Outcome.ALREADY_DONE), result
        taken.append((due.transition.name, result.rotation.state))
        r = result.rotation
    assert r.state is S.COMPLETED
    expected = [
        ("create", S.CREATED),
        ("verify", S.VERIFIED),
        ("promote", S.DEACTIVATED if emergency else S.PROMOTED),
        ("delete", S.COMPLETED),
    ]
    if emergency:
        expected.insert(0, ("emergency-deactivate", S.PLANNED))
    else:
        expected.insert(3, ("deactivate", S.DEACTIVATED))
    assert taken == expected
    keys = (await world.iam.list_access_keys(UserName=USER))["AccessKeyMetadata"]
    assert [k["Status"] for k in keys] == [str(Status.ACTIVE)]


async def test_a_step_may_not_journal_a_state_its_row_does_not_allow() -> None:
    """A write outside the row is refused before it reaches the journal."""
    world = World()
    r = await world.start(emergency=False)
    world.steps._row = VERIFY  # what ``Steps.run`` sets while the verify step runs
    with pytest.raises(ProtocolViolation, match="step verify may not leave it completed"):
        await world.steps._save(r, state=S.COMPLETED)
    assert (await world.journal.get(r.rotation_id)).state is S.PLANNED


class Lying(Steps):
    """Steps whose create reports a state the create row does not allow."""

    async def run(
        self, rotation: Rotation, row: Transition, *, guard: Callable[[], None] | None = None
    ) -> StepResult:
        return StepResult(
            rotation=rotation.evolve(state=S.PROMOTED), step=row.step, outcome=Outcome.DONE
        )


async def test_the_driver_refuses_a_step_that_reports_another_state_and_fails_the_rotation() -> (
    None
):
    world = World()
    r = await world.start(emergency=False)
    lying = Lying(
        journal=world.journal,
        kind=world.kind,
        sink=world.sink,
        rule=world.rule,
        clock=lambda: datetime.now(UTC),
    )
    r, done = await world.driver.drive(r, lying)
    assert r.state is S.FAILED
    assert [(d.step, d.outcome) for d in done] == [(Step.CREATE, Outcome.FAILED)]
    assert "step create may not leave it promoted (protocol table)" in r.reason
    history = await world.journal.steps(r.rotation_id)
    assert [(h.step, h.outcome) for h in history] == [(Step.CREATE, Outcome.FAILED)]
