"""A dry run's preview (``rotator.rotation.preview``) is the protocol's own path: the steps
it lists are the ones the real steps then take, in the same order, on the same credentials,
each due when ``next_step`` says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotator.model import Kind, Outcome, RotationState, Step
from rotator.rotation import protocol
from rotator.rotation.preview import Words, ahead
from rotator.rotation.protocol import TABLE, Transition, next_step
from tests.rotation.test_protocol import USER, World, rotation

S = RotationState
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WORDS = Words(noun="access key", sink="file /secrets/ci-app.json")


@pytest.mark.parametrize("row", TABLE, ids=lambda row: row.name)
def test_each_rows_success_lands_in_a_state_the_row_allows(row: Transition) -> None:
    for state in row.leaves:
        r = rotation(state, emergency=True, promoted_at=NOW)
        if not row.applies(r):
            continue
        after = row.succeeds(r, NOW + timedelta(hours=1))
        assert after.state in row.reaches, (row.name, state, after.state)
        assert after.updated_at == NOW + timedelta(hours=1)


def test_a_normal_rotation_previews_every_step_with_when_and_on_what() -> None:
    r = rotation(S.PLANNED).evolve(created_at=NOW, updated_at=NOW)
    planned = ahead(r, NOW, WORDS)
    assert [(p.step, p.credential_id, p.rotation.updated_at) for p in planned] == [
        (Step.CREATE, None, NOW),
        (Step.VERIFY, None, NOW),
        (Step.PROMOTE, None, NOW),
        (Step.DEACTIVATE, "AKIAOLD", NOW + timedelta(days=7)),  # deactivate_after
        (Step.DELETE, "AKIAOLD", NOW + timedelta(days=10)),  # then delete_after
    ]
    assert all(p.outcome is Outcome.DRY_RUN for p in planned)
    assert "pending in file /secrets/ci-app.json" in planned[0].reason
    assert "current in file /secrets/ci-app.json" in planned[2].reason
    assert planned[-1].rotation.state is S.COMPLETED


def test_an_emergency_deactivates_first_and_deletes_after_the_hold() -> None:
    r = rotation(S.PLANNED, emergency=True, deactivate_after=timedelta(0)).evolve(
        created_at=NOW, updated_at=NOW, delete_after=timedelta(hours=1)
    )
    planned = ahead(r, NOW, WORDS)
    assert [(p.step, p.rotation.updated_at) for p in planned] == [
        (Step.DEACTIVATE, NOW),
        (Step.CREATE, NOW),
        (Step.VERIFY, NOW),
        (Step.PROMOTE, NOW),
        (Step.DELETE, NOW + timedelta(hours=1)),  # the hold runs from the promotion
    ]
    assert "leaked access key AKIAOLD first" in planned[0].reason


def test_an_escalated_rotation_previews_only_what_is_left() -> None:
    r = rotation(S.PROMOTED, emergency=True, promoted_at=NOW, new_credential_id="AKIANEW").evolve(
        delete_after=timedelta(0)
    )
    planned = ahead(r, NOW, WORDS)
    assert [(p.step, p.credential_id) for p in planned] == [
        (Step.DEACTIVATE, "AKIAOLD"),
        (Step.DELETE, "AKIAOLD"),
    ]


def test_a_finished_rotation_has_nothing_ahead() -> None:
    assert ahead(rotation(S.COMPLETED), NOW, WORDS) == ()


def test_a_protocol_row_without_words_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row added to the protocol must be worded for people before a dry run can show it."""
    new_row = Transition(
        name="notarize",
        step=Step.VERIFY,
        leaves=frozenset({S.PLANNED}),
        reaches=frozenset({S.CREATED}),
    )
    monkeypatch.setattr(protocol, "TABLE", (new_row, *TABLE))
    with pytest.raises(ValueError, match="no words for protocol row 'notarize'"):
        ahead(rotation(S.PLANNED), NOW, WORDS)


@pytest.mark.parametrize(
    ("emergency", "room"),
    [(False, False), (True, False), (True, True)],
    ids=["normal", "emergency", "emergency-at-the-limit"],
)
async def test_the_preview_is_what_the_steps_then_do(emergency: bool, room: bool) -> None:
    """On the in-memory twins: the steps a preview lists are those the real steps take,
    on the same credentials; at IAM's limit the leaked key makes room and its delete step
    is this rotation's own work (``done``), not ``already-done``."""
    world = World()
    r = await world.start(emergency=emergency)
    if room:
        await world.iam.create_access_key(UserName=USER)  # the user is at IAM's limit
        r = await world.journal.save(r.evolve(delete_first=r.old_credential_id))
    r = await world.journal.save(r.evolve(deactivate_after=timedelta(0)))
    planned = ahead(r, r.updated_at, WORDS)
    taken = []
    while (due := next_step(r)) is not None:
        r = await world.driver.reacquire(r)
        result = await world.steps.run(r, due.transition)
        taken.append(result)
        r = result.rotation
    assert [(p.step, p.credential_id or "new") for p in planned] == [
        (t.step, "new" if t.step in (Step.CREATE, Step.VERIFY, Step.PROMOTE) else t.credential_id)
        for t in taken
    ]
    assert [p.rotation.state for p in planned] == [t.rotation.state for t in taken]
    assert all(t.outcome is Outcome.DONE for t in taken), [(t.step, t.outcome) for t in taken]
    if room:
        assert "deleted by this rotation's create step" in taken[-1].reason
        assert f"delete the leaked access key {r.old_credential_id} to make room" in (
            planned[1].reason
        )
    assert r.kind is Kind.ACCESS_KEY and r.state is S.COMPLETED
