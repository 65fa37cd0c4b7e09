"""One contract for every journal: each ``journal`` test runs against every implementation
(memory, a SQLite file, and a DynamoDB table on the moto server).

What only one backend can get wrong is in ``test_sqlite.py`` and ``test_dynamodb.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from rotator.errors import Conflict, LeaseLost, NotFound
from rotator.journal import Journal, MemoryJournal, SqliteJournal, create_table, open_journal
from rotator.journal.base import TargetState, rotation_to_record
from rotator.model import Kind, Lease, Outcome, Rotation, RotationState, Step, StepRecord

ACCOUNT = "123456789012"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)
TABLE = "rotator-journal"


def rotation(
    user: str = "alice",
    *,
    kind: Kind = Kind.ACCESS_KEY,
    slot: str = "",
    at: datetime = NOW,
    lease: Lease | None = None,
) -> Rotation:
    new = Rotation.start(
        account=ACCOUNT,
        user=user,
        kind=kind,
        rule="default",
        now=at,
        slot=slot,
        old_credential_id="AKIAOLD",
    )
    return new.evolve(lease=lease)


@pytest.fixture(params=["memory", "sqlite", "dynamodb"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Journal]:
    if request.param == "dynamodb":
        request.getfixturevalue("aws_env")  # the standard AWS env, pointed at moto
        await create_table(TABLE, region=None)
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite://{tmp_path}/journal.db",
        "dynamodb": f"dynamodb://{TABLE}",
    }[request.param]
    async with open_journal(url) as opened:
        yield opened


async def test_add_stores_the_rotation_at_version_1(journal: Journal) -> None:
    new = rotation()
    stored = await journal.add(new)
    assert stored == new.evolve(version=1)
    assert await journal.get(new.rotation_id) == stored


async def test_every_field_round_trips_exactly_including_lease_and_timedeltas(
    journal: Journal,
) -> None:
    plus2 = timezone(timedelta(hours=2))
    full = Rotation(
        rotation_id="rot-full",
        account=ACCOUNT,
        user="bob",
        kind=Kind.SERVICE_CREDENTIAL,
        rule="services",
        slot="codecommit.amazonaws.com",
        state=RotationState.DEACTIVATED,
        old_credential_id="ACCAOLD",
        new_credential_id="ACCANEW",
        delete_first="ACCAGONE",
        emergency=True,
        deactivate_after=timedelta(days=7, seconds=3, microseconds=250),
        delete_after=timedelta(days=30, hours=1),
        created_at=NOW,
        updated_at=NOW + timedelta(microseconds=1),
        creating_at=NOW + timedelta(seconds=1),
        promoted_at=(NOW + timedelta(hours=1)).astimezone(plus2),
        deactivated_at=NOW + timedelta(days=7),
        finished_at=NOW + timedelta(days=8),
        reason="scheduled: older than 90 days",
        held_since=NOW + timedelta(days=2),
        known_ids=("ACCAOLD", "ACCAGONE"),
        lease=Lease(owner="worker-1", expires_at=NOW + TTL, fence=3),
    )
    await journal.add(full)
    got = await journal.get("rot-full")
    assert got == full.evolve(version=1)
    assert rotation_to_record(got) == rotation_to_record(full.evolve(version=1))  # offsets too


async def test_each_write_bumps_the_version_by_one(journal: Journal) -> None:
    added = await journal.add(rotation())
    held = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    creating = await journal.save(held.evolve(state=RotationState.CREATING))
    created = await journal.save(creating.evolve(state=RotationState.CREATED))
    released = await journal.release(created)
    assert [r.version for r in (added, held, creating, created, released)] == [1, 2, 3, 4, 5]
    assert created.state is RotationState.CREATED
    assert released.lease is None
    assert await journal.get(added.rotation_id) == released


async def test_save_of_a_stale_version_raises_lease_lost_and_changes_nothing(
    journal: Journal,
) -> None:
    first = await journal.add(rotation())
    current = await journal.save(first.evolve(reason="first writer"))
    with pytest.raises(LeaseLost) as lost:
        await journal.save(first.evolve(reason="second writer"))
    assert lost.value.rotation_id == first.rotation_id
    assert await journal.get(first.rotation_id) == current


async def test_a_second_unfinished_rotation_for_the_same_target_conflicts(
    journal: Journal,
) -> None:
    first = await journal.add(rotation())
    with pytest.raises(Conflict) as conflict:
        await journal.add(rotation())
    assert conflict.value.existing == first.rotation_id
    assert await journal.list_active() == [first]


@pytest.mark.parametrize(
    "end", [RotationState.COMPLETED, RotationState.FAILED, RotationState.ROLLED_BACK]
)
async def test_a_target_takes_a_new_rotation_once_the_first_is_finished(
    journal: Journal, end: RotationState
) -> None:
    first = await journal.add(rotation())
    await journal.save(first.evolve(state=end, finished_at=NOW))
    second = await journal.add(rotation(at=NOW + timedelta(hours=1)))
    assert await journal.list_active() == [second]


async def test_a_different_slot_user_or_kind_is_a_different_target(journal: Journal) -> None:
    service = Kind.SERVICE_CREDENTIAL
    await journal.add(rotation(kind=service, slot="codecommit.amazonaws.com"))
    await journal.add(rotation(kind=service, slot="cassandra.amazonaws.com"))
    await journal.add(rotation("bob", kind=service, slot="codecommit.amazonaws.com"))
    await journal.add(rotation(kind=Kind.ACCESS_KEY))
    assert len(await journal.list_active()) == 4


async def test_reopening_a_finished_rotation_conflicts_if_its_target_is_taken(
    journal: Journal,
) -> None:
    done = await journal.add(rotation())
    done = await journal.save(done.evolve(state=RotationState.FAILED))
    second = await journal.add(rotation())
    with pytest.raises(Conflict) as conflict:
        await journal.save(done.evolve(state=RotationState.PLANNED))
    assert conflict.value.existing == second.rotation_id
    assert await journal.get(done.rotation_id) == done


async def test_acquire_takes_a_free_lease_with_fence_1(journal: Journal) -> None:
    added = await journal.add(rotation())
    held = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    assert held.lease == Lease(owner="w1", expires_at=NOW + TTL, fence=1)
    assert held == added.evolve(lease=held.lease, version=2)
    assert await journal.get(added.rotation_id) == held


async def test_acquire_by_the_holder_extends_the_expiry_with_the_same_fence(
    journal: Journal,
) -> None:
    added = await journal.add(rotation())
    await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    later = NOW + timedelta(minutes=4)
    extended = await journal.acquire(added.rotation_id, "w1", TTL, later)
    assert extended.lease == Lease(owner="w1", expires_at=later + TTL, fence=1)
    assert extended.version == 3


async def take_over(journal: Journal, rotation_id: str, owner: str, now: datetime) -> Rotation:
    """``owner`` takes over another's lease the only way there is: with what it saw."""
    with pytest.raises(LeaseLost) as refused:
        await journal.acquire(rotation_id, owner, TTL, now)
    return await journal.acquire(rotation_id, owner, TTL, now, takeover=refused.value.seen)


@pytest.mark.parametrize("late", [timedelta(0), TTL, timedelta(days=30)])
async def test_another_owners_lease_is_refused_whatever_the_wall_clock_says(
    journal: Journal, late: timedelta
) -> None:
    """A taker's clock may be ahead: a lease "expired" by it proves nothing."""
    added = await journal.add(rotation())
    held = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    with pytest.raises(LeaseLost) as refused:
        await journal.acquire(added.rotation_id, "w2", TTL, NOW + late)
    assert await journal.get(added.rotation_id) == held
    assert (refused.value.holder, refused.value.until) == ("w1", (NOW + TTL).isoformat())
    assert refused.value.seen is not None and refused.value.seen.version == held.version


async def test_a_lease_is_taken_over_with_what_was_seen_and_the_next_fence(
    journal: Journal,
) -> None:
    added = await journal.add(rotation())
    await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    taken = await take_over(journal, added.rotation_id, "w2", NOW + TTL)
    assert taken.lease == Lease(owner="w2", expires_at=NOW + 2 * TTL, fence=2)
    retaken = await journal.acquire(added.rotation_id, "w2", TTL, NOW + 3 * TTL)
    assert retaken.lease == Lease(owner="w2", expires_at=NOW + 4 * TTL, fence=2)


async def test_a_takeover_is_refused_once_the_holder_renewed_or_wrote(journal: Journal) -> None:
    """What the taker saw is stale as soon as the live holder shows a sign of life."""
    added = await journal.add(rotation())
    held = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    with pytest.raises(LeaseLost) as first:
        await journal.acquire(added.rotation_id, "w2", TTL, NOW)
    renewed = await journal.renew(held, TTL, NOW + timedelta(minutes=1))
    assert renewed.version == held.version, "a heartbeat keeps the version a step saves with"
    assert renewed.lease == Lease(owner="w1", expires_at=NOW + TTL + timedelta(minutes=1), fence=1)
    with pytest.raises(LeaseLost):
        await journal.acquire(added.rotation_id, "w2", TTL, NOW, takeover=first.value.seen)
    saved = await journal.save(held.evolve(state=RotationState.CREATING))
    assert saved.lease == renewed.lease, "a save keeps the renewed lease"


async def test_renew_is_refused_to_a_holder_whose_lease_was_taken_over(journal: Journal) -> None:
    added = await journal.add(rotation())
    old = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    new = await take_over(journal, added.rotation_id, "w2", NOW)
    with pytest.raises(LeaseLost):
        await journal.renew(old, TTL, NOW)
    assert await journal.get(added.rotation_id) == new


async def test_fences_grow_across_rotations_of_a_target(journal: Journal) -> None:
    """A later rotation of the same credential is fenced above every earlier one, so a
    sink can refuse a late write of the older one."""
    assert await journal.target_fence((ACCOUNT, "alice", Kind.ACCESS_KEY, "")) == 0
    lease = Lease(owner="w1", expires_at=NOW + TTL, fence=1)
    first = await journal.add(rotation(lease=lease))
    first = await take_over(journal, first.rotation_id, "w2", NOW)
    assert first.lease is not None and first.lease.fence == 2
    await journal.save(first.evolve(state=RotationState.COMPLETED))
    target = (ACCOUNT, "alice", Kind.ACCESS_KEY, "")
    assert await journal.target_fence(target) == 2
    second = await journal.add(rotation(lease=lease))
    assert second.lease is not None and second.lease.fence == 3
    other = await journal.add(rotation("bob", lease=lease))
    assert other.lease is not None and other.lease.fence == 1, "fences are per target"


async def test_add_is_refused_when_the_target_moved_since_it_was_read(journal: Journal) -> None:
    """Two workers both found alice's key due; the first rotated it all the way: the
    second's add (expecting what it read before) is refused, even though no rotation of
    alice is unfinished any more."""
    target = (ACCOUNT, "alice", Kind.ACCESS_KEY, "")
    seen = await journal.target_fence(target)
    lease = Lease(owner="w1", expires_at=NOW + TTL, fence=1)
    first = await journal.add(rotation(lease=lease), expect_fence=seen)
    await journal.save(first.evolve(state=RotationState.COMPLETED))
    with pytest.raises(Conflict):
        await journal.add(rotation(lease=lease), expect_fence=seen)
    assert len(await journal.list_rotations()) == 1
    again = await journal.add(
        rotation(lease=lease), expect_fence=await journal.target_fence(target)
    )
    assert again.lease is not None and again.lease.fence == 2


async def test_target_state_says_busy_then_when_the_last_rotation_finished(
    journal: Journal,
) -> None:
    """What a sweep's re-check reads: never rotated; busy while a rotation is unfinished;
    then free, with the finishing write's time and the fence ``target_fence`` gives."""
    target = (ACCOUNT, "alice", Kind.ACCESS_KEY, "")
    assert await journal.target_state(target) == TargetState(fence=0, busy=False, changed_at=None)
    lease = Lease(owner="w1", expires_at=NOW + TTL, fence=1)
    first = await journal.add(rotation(lease=lease))
    busy = await journal.target_state(target)
    assert busy.busy and busy.fence == 1
    finished = NOW + timedelta(minutes=3)
    done = first.evolve(state=RotationState.COMPLETED, finished_at=finished, updated_at=finished)
    await journal.save(done)
    state = await journal.target_state(target)
    assert state == TargetState(fence=1, busy=False, changed_at=finished)
    assert state.fence == await journal.target_fence(target)
    other = await journal.target_state((ACCOUNT, "bob", Kind.ACCESS_KEY, ""))
    assert other == TargetState(fence=0, busy=False, changed_at=None), "per target"
    slot = await journal.target_state((ACCOUNT, "alice", Kind.SERVICE_CREDENTIAL, "x.com"))
    assert not slot.busy and slot.changed_at is None


async def test_the_epoch_is_kept_by_the_journal(journal: Journal) -> None:
    assert journal.epoch.startswith("journal-")
    assert journal.epoch == journal.epoch


async def test_a_stale_owner_cannot_save_after_its_lease_was_taken_over(journal: Journal) -> None:
    added = await journal.add(rotation())
    old = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    new = await take_over(journal, added.rotation_id, "w2", NOW + TTL)
    with pytest.raises(LeaseLost):  # current version, but w1's fence: refused by the fence
        await journal.save(new.evolve(lease=old.lease, state=RotationState.CREATING))
    with pytest.raises(LeaseLost):  # w1's own copy: stale version and fence
        await journal.save(old.evolve(state=RotationState.CREATING))
    assert await journal.get(added.rotation_id) == new


async def test_a_stale_owner_cannot_release_a_lease_that_was_taken_over(journal: Journal) -> None:
    added = await journal.add(rotation())
    old = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    new = await take_over(journal, added.rotation_id, "w2", NOW + TTL)
    assert await journal.release(old) == new
    assert await journal.release(new.evolve(lease=old.lease)) == new
    assert await journal.get(added.rotation_id) == new


async def test_save_without_the_lease_is_refused_while_someone_holds_it(journal: Journal) -> None:
    added = await journal.add(rotation())
    held = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    with pytest.raises(LeaseLost):
        await journal.save(held.evolve(lease=None, state=RotationState.CREATING))


async def test_save_keeps_the_stored_lease_so_a_writer_cannot_extend_its_own(
    journal: Journal,
) -> None:
    added = await journal.add(rotation())
    held = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    longer = Lease(owner="w1", expires_at=NOW + timedelta(days=1), fence=1)
    saved = await journal.save(held.evolve(lease=longer, state=RotationState.CREATING))
    assert saved.lease == held.lease
    assert await journal.get(added.rotation_id) == saved


async def test_a_rotation_added_with_a_lease_is_held_by_its_creator(journal: Journal) -> None:
    added = await journal.add(rotation(lease=Lease(owner="w1", expires_at=NOW + TTL, fence=1)))
    with pytest.raises(LeaseLost):
        await journal.acquire(added.rotation_id, "w2", TTL, NOW)
    saved = await journal.save(added.evolve(state=RotationState.CREATING))
    assert saved.lease == added.lease


async def test_release_frees_the_lease_for_another_owner_with_the_next_fence(
    journal: Journal,
) -> None:
    added = await journal.add(rotation())
    old = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
    released = await journal.release(old)
    assert released == old.evolve(lease=None, version=3)
    new = await journal.acquire(added.rotation_id, "w2", TTL, NOW)  # before w1's expiry
    assert new.lease == Lease(owner="w2", expires_at=NOW + TTL, fence=2)
    assert await journal.release(old) == new  # releasing again is a no-op


async def test_release_without_a_lease_is_a_no_op(journal: Journal) -> None:
    added = await journal.add(rotation())
    assert await journal.release(added) == added


async def test_list_active_excludes_finished_and_is_oldest_first(journal: Journal) -> None:
    late = await journal.add(rotation("carol", at=NOW + timedelta(hours=2)))
    early = await journal.add(rotation("alice", at=NOW))
    # a later instant whose text sorts first: order is by time, not by string
    middle = await journal.add(
        rotation("bob", at=(NOW + timedelta(hours=1)).astimezone(timezone(-timedelta(hours=5))))
    )
    done = await journal.add(rotation("dave", at=NOW - timedelta(hours=1)))
    await journal.save(done.evolve(state=RotationState.COMPLETED))
    assert await journal.list_active() == [early, middle, late]


async def test_list_rotations_is_newest_first_filtered_by_user_and_limited(
    journal: Journal,
) -> None:
    alice = [
        await journal.add(rotation(kind=Kind.SERVICE_CREDENTIAL, slot=f"s{i}", at=NOW + i * TTL))
        for i in range(3)
    ]
    await journal.save(alice[0].evolve(state=RotationState.COMPLETED))  # finished are listed
    bob = await journal.add(rotation("bob", at=NOW + 10 * TTL))
    ids = [r.rotation_id for r in (bob, alice[2], alice[1], alice[0])]
    assert [r.rotation_id for r in await journal.list_rotations()] == ids
    assert [r.rotation_id for r in await journal.list_rotations(user="alice")] == ids[1:]
    assert [r.rotation_id for r in await journal.list_rotations(user="alice", limit=2)] == ids[1:3]
    assert await journal.list_rotations(limit=1) == [bob]
    assert await journal.list_rotations(user="nobody") == []


async def test_steps_are_appended_and_come_back_oldest_first(journal: Journal) -> None:
    one = await journal.add(rotation("alice"))
    two = await journal.add(rotation("bob"))
    records = [
        StepRecord(
            rotation_id=one.rotation_id,
            at=NOW,
            step=Step.CREATE,
            outcome=Outcome.DONE,
            run_id="run-1",
            credential_id="AKIANEW",
        ),
        StepRecord(
            rotation_id=two.rotation_id,
            at=NOW,
            step=Step.CREATE,
            outcome=Outcome.RETRY,
            reason="Throttling",
        ),
        StepRecord(
            rotation_id=one.rotation_id,
            at=NOW + TTL,
            step=Step.VERIFY,
            outcome=Outcome.HELD,
            reason="old key used 2 minutes ago",
            run_id="run-2",
        ),
    ]
    for record in records:
        await journal.record_step(record)
    assert await journal.steps(one.rotation_id) == [records[0], records[2]]
    assert await journal.steps(two.rotation_id) == [records[1]]
    assert await journal.steps("rot-unknown") == []


async def test_unknown_rotation_ids_raise_not_found(journal: Journal) -> None:
    ghost = rotation()
    with pytest.raises(NotFound) as missing:
        await journal.get(ghost.rotation_id)
    assert missing.value.rotation_id == ghost.rotation_id
    with pytest.raises(NotFound):
        await journal.save(ghost)
    with pytest.raises(NotFound):
        await journal.acquire(ghost.rotation_id, "w1", TTL, NOW)
    with pytest.raises(NotFound):
        await journal.release(ghost)


# --- open_journal --------------------------------------------------------------------


def test_open_journal_maps_memory_to_a_memory_journal() -> None:
    assert isinstance(open_journal("memory://"), MemoryJournal)


@pytest.mark.parametrize("slashes", ["//", "///"])  # sqlite:///abs and sqlite:////abs
def test_open_journal_maps_sqlite_with_an_absolute_path(tmp_path: Path, slashes: str) -> None:
    journal = open_journal(f"sqlite:{slashes}{tmp_path}/j.db")
    assert isinstance(journal, SqliteJournal)
    assert str(journal.path) == f"{tmp_path}/j.db"


def test_open_journal_resolves_a_relative_sqlite_path_from_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    journal = open_journal("sqlite:state/j.db")
    assert isinstance(journal, SqliteJournal)
    assert journal.path == tmp_path / "state" / "j.db"


@pytest.mark.parametrize("url", ["dynamo://rotations", "postgres://db/x", "journal.db"])
def test_open_journal_rejects_an_unknown_scheme_naming_url_and_schemes(url: str) -> None:
    with pytest.raises(
        ValueError, match="supported schemes are dynamodb:, memory:, sqlite:"
    ) as error:
        open_journal(url)
    assert repr(url) in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://host/j.db",
        "sqlite:",
        "sqlite:///",
        "memory://x",
        "sqlite:///j.db?mode=ro",
        "memory://?region=eu-west-1",
        "sqlite:///j.db#frag",
    ],
)
def test_open_journal_rejects_a_malformed_url(url: str) -> None:
    with pytest.raises(ValueError, match="journal URL"):
        open_journal(url)
