"""What only the DynamoDB table can get wrong: creating it, its items (TTL, locks, numbers),
Scan and Query paging, compare-and-set between replicas, and the URL. The behaviour every
journal shares is proved in ``test_contract.py``; all of this runs against a moto server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend

from rotator.errors import Conflict, JournalError, LeaseLost, Transient
from rotator.journal import DynamoJournal, create_table, open_journal
from rotator.journal.dynamodb import ATTEMPTS
from rotator.journal.dynamodb_table import LOCK_SK
from rotator.model import Kind, Outcome, Rotation, RotationState, Step, StepRecord
from tests.journal.test_contract import ACCOUNT, NOW, TTL, rotation
from tests.support.moto import MotoSandbox

TABLE = "rotator-journal"
RETENTION = timedelta(days=400)


@pytest.fixture
async def table(sandbox: MotoSandbox) -> str:
    assert await create_table(TABLE, region=None) is True
    return TABLE


@pytest.fixture
async def journal(table: str) -> AsyncIterator[DynamoJournal]:
    async with DynamoJournal(table, region=None) as opened:
        yield opened


def raw_item(sandbox: MotoSandbox, pk: str, sk: str) -> dict[str, Any] | None:
    found = sandbox.client("dynamodb").get_item(
        TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
    )
    item: dict[str, Any] | None = found.get("Item")
    return item


def epoch(delta: timedelta = RETENTION) -> str:
    return str(int((NOW + delta).timestamp()))


# --- create_table --------------------------------------------------------------------


async def test_create_table_is_idempotent_on_demand_tagged_and_expires_by_expires_at(
    sandbox: MotoSandbox,
) -> None:
    assert await create_table(TABLE, region=None, retention_days=30) is True
    assert await create_table(TABLE, region=None) is False
    dynamodb = sandbox.client("dynamodb")
    described = dynamodb.describe_table(TableName=TABLE)["Table"]
    assert described["TableStatus"] == "ACTIVE"
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    ttl = dynamodb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    tags = dynamodb.list_tags_of_resource(ResourceArn=described["TableArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {
        "managed-by": "rotator",
        "rotator-retention-days": "30",
    }


def _create_raw(sandbox: MotoSandbox, hash_key: str, range_key: str) -> None:
    sandbox.client("dynamodb").create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": hash_key, "AttributeType": "S"},
            {"AttributeName": range_key, "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


async def test_create_table_enables_ttl_on_an_existing_table_that_lacks_it(
    sandbox: MotoSandbox,
) -> None:
    _create_raw(sandbox, "pk", "sk")
    assert await create_table(TABLE, region=None) is False
    ttl = sandbox.client("dynamodb").describe_time_to_live(TableName=TABLE)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


async def test_a_table_keyed_otherwise_is_refused_by_create_table_and_by_the_journal(
    sandbox: MotoSandbox,
) -> None:
    _create_raw(sandbox, "id", "kind")
    with pytest.raises(JournalError, match="not a rotator journal"):
        await create_table(TABLE, region=None)
    with pytest.raises(JournalError, match="not a rotator journal"):
        async with DynamoJournal(TABLE, region=None):
            pass


async def test_opening_a_missing_table_says_to_run_journal_init(sandbox: MotoSandbox) -> None:
    with pytest.raises(JournalError, match="rotator journal init") as error:
        async with DynamoJournal(TABLE, region=None):
            pass
    assert TABLE in str(error.value)
    assert sandbox.client("dynamodb").list_tables()["TableNames"] == []  # never created


async def test_the_region_of_the_url_is_the_one_used(table: str) -> None:
    with pytest.raises(JournalError, match="rotator journal init"):  # made in us-east-1
        async with open_journal(f"dynamodb://{table}?region=eu-west-1"):
            pass
    async with open_journal(f"dynamodb://{table}?region=us-east-1") as journal:
        assert await journal.list_active() == []


async def test_a_journal_that_is_not_open_says_so(table: str) -> None:
    with pytest.raises(JournalError, match="not open"):
        await DynamoJournal(table, region=None).get("rot-x")


# --- items ---------------------------------------------------------------------------


async def test_finished_rotations_and_steps_carry_expires_at_and_numbers_are_n(
    table: str, sandbox: MotoSandbox
) -> None:
    async with DynamoJournal(table, region=None, retention=RETENTION) as journal:
        done = await journal.add(rotation())
        pk = f"rot#{done.rotation_id}"
        item = raw_item(sandbox, pk, "rotation")
        assert item is not None
        assert "expires_at" not in item
        assert item["version"] == {"N": "1"}
        assert item["new_credential_id"] == {"NULL": True}
        assert float(item["deactivate_after"]["N"]) == done.deactivate_after.total_seconds()
        finished_at = NOW + timedelta(days=1)
        await journal.save(done.evolve(state=RotationState.COMPLETED, finished_at=finished_at))
        item = raw_item(sandbox, pk, "rotation")
        assert item is not None
        assert item["expires_at"] == {"N": epoch(timedelta(days=1) + RETENTION)}
        unstamped = await journal.add(rotation("bob"))  # no finished_at: updated_at counts
        await journal.save(unstamped.evolve(state=RotationState.FAILED))
        item = raw_item(sandbox, f"rot#{unstamped.rotation_id}", "rotation")
        assert item is not None
        assert item["expires_at"] == {"N": epoch()}
        await journal.record_step(
            StepRecord(rotation_id=done.rotation_id, at=NOW, step=Step.PLAN, outcome=Outcome.DONE)
        )
    steps = sandbox.client("dynamodb").query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :s)",
        ExpressionAttributeValues={":pk": {"S": pk}, ":s": {"S": "step#"}},
    )["Items"]
    assert [s["expires_at"] for s in steps] == [{"N": epoch()}]


async def test_the_target_lock_is_held_exactly_as_long_as_the_rotation_is_unfinished(
    journal: DynamoJournal, sandbox: MotoSandbox
) -> None:
    """The lock item names the unfinished rotation; once it finishes the item stays,
    free, keeping the target's fence for the next rotation and when it finished."""
    lock = ("target#123456789012#alice#service-credential#codecommit.amazonaws.com", "lock")
    first = await journal.add(
        rotation(kind=Kind.SERVICE_CREDENTIAL, slot="codecommit.amazonaws.com")
    )
    assert raw_item(sandbox, *lock) == {
        "pk": {"S": lock[0]},
        "sk": {"S": "lock"},
        "rotation_id": {"S": first.rotation_id},
        "fence": {"N": "0"},
    }
    failed = await journal.save(first.evolve(state=RotationState.FAILED))
    assert raw_item(sandbox, *lock) == {
        "pk": {"S": lock[0]},
        "sk": {"S": "lock"},
        "fence": {"N": "0"},
        "changed_at": {"S": failed.updated_at.isoformat()},
    }
    reopened = await journal.save(failed.evolve(state=RotationState.PLANNED))
    assert reopened.version == 3
    lock_item = raw_item(sandbox, *lock)
    assert lock_item is not None
    assert lock_item["rotation_id"] == {"S": first.rotation_id}
    finished = await journal.add(rotation("bob").evolve(state=RotationState.COMPLETED))
    assert raw_item(sandbox, "target#123456789012#bob#access-key#", "lock") is None
    assert await journal.list_active() == [reopened]
    assert finished in await journal.list_rotations()


async def test_adding_an_existing_rotation_id_is_refused(journal: DynamoJournal) -> None:
    first = await journal.add(rotation())
    done = await journal.save(first.evolve(state=RotationState.COMPLETED))
    with pytest.raises(JournalError, match="already exists"):
        await journal.add(first.evolve(user="bob"))
    assert await journal.get(first.rotation_id) == done


async def test_scan_and_query_follow_every_page(journal: DynamoJournal) -> None:
    big = "x" * 300_000  # four of these pass DynamoDB's 1 MB page
    added = [
        await journal.add(rotation(f"user{i}", at=NOW + i * TTL).evolve(reason=big))
        for i in range(4)
    ]
    assert await journal.list_active() == added
    assert await journal.list_rotations() == added[::-1]
    records = [
        StepRecord(
            rotation_id=added[0].rotation_id,
            at=NOW + i * TTL,
            step=Step.VERIFY,
            outcome=Outcome.HELD,
            reason=big,
        )
        for i in range(4)
    ]
    for record in records:
        await journal.record_step(record)
    assert await journal.steps(added[0].rotation_id) == records


async def test_steps_at_one_instant_keep_the_order_they_were_written(
    journal: DynamoJournal,
) -> None:
    added = await journal.add(rotation())
    records = [
        StepRecord(rotation_id=added.rotation_id, at=NOW, step=step, outcome=Outcome.DONE)
        for step in (Step.VERIFY, Step.CREATE, Step.PROMOTE, Step.DELETE, Step.DEACTIVATE)
    ]
    for record in records:
        await journal.record_step(record)
    assert await journal.steps(added.rotation_id) == records


def cancel_transactions(monkeypatch: pytest.MonkeyPatch, code: str, times: int) -> list[int]:
    """Make moto cancel the next ``times`` transactions with ``code`` as the first write's
    reason (what DynamoDB answers when a concurrent transaction touches the same item);
    returns the running count of transactions it was asked for."""
    calls: list[int] = []
    apply = DynamoDBBackend.transact_write_items

    def cancelled(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        calls.append(len(transact_items))
        if len(calls) <= times:
            others = [(None, None, None)] * (len(transact_items) - 1)
            raise TransactionCanceledException([(code, "injected", None), *others])
        apply(backend, transact_items)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", cancelled)
    return calls


async def test_a_transaction_cancelled_by_a_concurrent_one_is_tried_again(
    journal: DynamoJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    added = await journal.add(rotation())
    calls = cancel_transactions(monkeypatch, "TransactionConflict", times=2)
    done = await journal.save(added.evolve(state=RotationState.COMPLETED, finished_at=NOW))
    assert len(calls) == 3
    assert done == added.evolve(state=RotationState.COMPLETED, finished_at=NOW, version=2)
    assert await journal.get(added.rotation_id) == done
    assert await journal.add(rotation()) is not None  # and its target was freed


async def test_a_target_that_stays_contended_is_transient(
    journal: DynamoJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = cancel_transactions(monkeypatch, "TransactionConflict", times=100)
    with pytest.raises(Transient, match="TransactionConflict"):
        await journal.add(rotation())
    assert len(calls) == ATTEMPTS
    assert await journal.list_rotations() == []


async def test_a_throttled_transaction_is_transient(
    journal: DynamoJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancel_transactions(monkeypatch, "ThrottlingError", times=100)
    with pytest.raises(Transient) as transient:
        await journal.add(rotation())
    assert transient.value.code == "ThrottlingError"
    assert transient.value.ids == {"table": TABLE}


# --- two replicas --------------------------------------------------------------------


async def test_two_replicas_racing_add_for_one_target_one_wins(table: str) -> None:
    async with DynamoJournal(table, region=None) as one, DynamoJournal(table, region=None) as two:
        for user in ("u0", "u1", "u2", "u3", "u4"):
            results = await asyncio.gather(
                one.add(rotation(user)), two.add(rotation(user)), return_exceptions=True
            )
            wins = [r for r in results if isinstance(r, Rotation)]
            conflicts = [r for r in results if isinstance(r, Conflict)]
            assert len(wins) == 1, results
            assert len(conflicts) == 1, results
            assert conflicts[0].existing == wins[0].rotation_id
        assert len(await one.list_active()) == 5


async def test_two_replicas_racing_acquire_one_wins(table: str) -> None:
    async with DynamoJournal(table, region=None) as one, DynamoJournal(table, region=None) as two:
        for user in ("u0", "u1", "u2", "u3", "u4"):
            added = await one.add(rotation(user))
            results = await asyncio.gather(
                one.acquire(added.rotation_id, "w1", TTL, NOW),
                two.acquire(added.rotation_id, "w2", TTL, NOW),
                return_exceptions=True,
            )
            wins = [r for r in results if isinstance(r, Rotation)]
            assert len(wins) == 1, results
            assert sum(isinstance(r, LeaseLost) for r in results) == 1, results
            assert wins[0].lease is not None
            assert wins[0].lease.fence == 1
            assert await two.get(added.rotation_id) == wins[0]


async def test_two_replicas_racing_save_of_one_version_one_wins(table: str) -> None:
    async with DynamoJournal(table, region=None) as one, DynamoJournal(table, region=None) as two:
        added = await one.add(rotation())
        results = await asyncio.gather(
            one.save(added.evolve(reason="one")),
            two.save(added.evolve(reason="two")),
            return_exceptions=True,
        )
        wins = [r for r in results if isinstance(r, Rotation)]
        assert len(wins) == 1, results
        assert sum(isinstance(r, LeaseLost) for r in results) == 1, results
        assert await one.get(added.rotation_id) == wins[0]


async def test_a_replica_whose_lease_was_taken_over_cannot_save(table: str) -> None:
    async with DynamoJournal(table, region=None) as one, DynamoJournal(table, region=None) as two:
        added = await one.add(rotation())
        old = await one.acquire(added.rotation_id, "w1", TTL, NOW)
        with pytest.raises(LeaseLost) as refused:
            await two.acquire(added.rotation_id, "w2", TTL, NOW + TTL)
        new = await two.acquire(
            added.rotation_id, "w2", TTL, NOW + TTL, takeover=refused.value.seen
        )
        with pytest.raises(LeaseLost):
            await one.save(old.evolve(state=RotationState.CREATING))
        with pytest.raises(LeaseLost):
            await one.save(new.evolve(lease=old.lease, state=RotationState.CREATING))
        assert await one.release(old) == new
        assert await two.save(new.evolve(state=RotationState.CREATING)) == new.evolve(
            state=RotationState.CREATING, version=new.version + 1
        )


# --- open_journal --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "table", "region"),
    [
        ("dynamodb://tbl?region=eu-west-1", "tbl", "eu-west-1"),
        ("dynamodb://rotator-journal", "rotator-journal", None),
        ("dynamodb://Rotator.Journal_2/", "Rotator.Journal_2", None),
    ],
)
def test_open_journal_maps_dynamodb_to_a_table_and_region(
    url: str, table: str, region: str | None
) -> None:
    journal = open_journal(url)
    assert isinstance(journal, DynamoJournal)
    assert (journal.table, journal.region) == (table, region)


@pytest.mark.parametrize(
    "url",
    [
        "dynamodb://",
        "dynamodb:///tbl",
        "dynamodb://tbl/sub",
        "dynamodb://ab",
        "dynamodb://user@tbl",
        "dynamodb://tbl:8000",
        "dynamodb://tbl?region=",
        "dynamodb://tbl?region",
        "dynamodb://tbl?profile=x",
        "dynamodb://tbl?region=eu-west-1&region=us-east-1",
        "dynamodb://tbl?region=eu-west-1&endpoint=x",
        "dynamodb://tbl#frag",
    ],
)
def test_open_journal_rejects_a_malformed_dynamodb_url_naming_it(url: str) -> None:
    with pytest.raises(ValueError, match="journal URL") as error:
        open_journal(url)
    assert repr(url) in str(error.value)


async def test_a_lock_freed_by_an_older_version_counts_as_changed_now(
    journal: DynamoJournal, sandbox: MotoSandbox
) -> None:
    """A lock item an older rotator freed keeps its fence but no time: the target's last
    change is unknown, so it is said to be now (a sweep's re-check then asks IAM)."""
    target = (ACCOUNT, "alice", Kind.ACCESS_KEY, "")
    pk = "target#" + "#".join((ACCOUNT, "alice", "access-key", ""))
    sandbox.client("dynamodb").put_item(
        TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": LOCK_SK}, "fence": {"N": "4"}}
    )
    before = datetime.now(UTC)
    state = await journal.target_state(target)
    assert state.fence == 4 and not state.busy
    assert state.changed_at is not None and state.changed_at >= before
