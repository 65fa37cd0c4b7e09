"""The journal in one DynamoDB table, shared by any number of replicas and Lambda runs.

URL: ``dynamodb://TABLE?region=REGION`` (without ``region``, the environment's). Clients
come from ``rotator.aws.Aws``, so ``AWS_ENDPOINT_URL`` and the rest of the standard AWS
environment apply. ``create_table`` (``rotator journal init``) makes the table; opening
a journal never does.

Table design — one table, key ``pk`` (S, HASH) + ``sk`` (S, RANGE), on-demand billing::

    pk                                  sk                        attributes
    rot#<rotation_id>                   rotation                  rotation_to_record,
                                                                  + expires_at if finished
    rot#<rotation_id>                   step#<utc-at>#<ns>#<rnd>  step_to_record, expires_at
    target#<account>#<user>#<kind>#<slot>  lock                   fence, rotation_id
    meta#journal                        epoch                     epoch

* Every write of a rotation is a Put conditioned on the stored ``version`` (optimistic
  concurrency); the decision is the pure rules of ``rotator.journal.rules``. When the
  condition fails someone else wrote: the record is read again and the rule decides again,
  so a stale ``save`` raises ``LeaseLost`` and a racing ``acquire`` sees the winner's lease.
* One unfinished rotation per target: an unfinished rotation owns its target's ``lock``
  item (``rotation_id``). ``add`` reads the lock, then puts the rotation and the lock in
  one transaction, the lock conditioned on being free *with the fence it read*: a
  rotation of the target that happened in between (even one that already finished)
  moved the fence, and the add is refused (``Conflict``) — no check-then-add gap. A save
  that finishes a rotation frees the lock in the same transaction, keeping the rotation's
  last fence there (the next rotation of the target is fenced above it); one that reopens
  it takes the lock back (``Conflict`` if another rotation holds it meanwhile).
* ``meta#journal`` holds the journal's ``epoch``, made on first open.
* ``expires_at`` (epoch seconds, the table's TTL attribute) is ``finished_at`` (else
  ``updated_at``) + ``retention`` on finished rotations, and ``at`` + ``retention`` on
  steps, so DynamoDB deletes old history by itself (within days of expiry, for free).
* Reads are strongly consistent. ``steps`` is one Query. ``list_active`` and
  ``list_rotations`` Scan the whole table (every page) and sort in Python: each call
  reads every item — rotations, steps and locks — which is cheap for thousands of
  rotations but grows with the history the retention keeps. Rotations created at the same
  instant are ordered by ID (there is no insertion order).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any, Self

from botocore.exceptions import ClientError

from rotator.aws import Aws
from rotator.errors import Conflict, CorruptRecord, JournalError, LeaseLost, NotFound, Transient
from rotator.journal.base import (
    TargetState,
    decode_rows,
    rotation_from_record,
    rotation_to_record,
    step_from_record,
    step_to_record,
)
from rotator.journal.dynamodb_table import (
    DEFAULT_RETENTION_DAYS,
    META_KEY,
    PK,
    REFUSED,
    ROTATION_SK,
    STEP_PREFIX,
    TTL_ATTRIBUTE,
    Item,
    Write,
    check_key_schema,
    create_table,
    expires_at,
    from_item,
    lock_free,
    lock_key,
    lock_put,
    lock_take,
    refusal,
    rotation_key,
    rotation_put,
    step_key,
    table_errors,
    to_item,
)
from rotator.journal.rules import (
    Record,
    acquired,
    added,
    changed_at,
    describe_target,
    is_finished,
    released,
    renewed,
    saved,
    target_of,
)
from rotator.model import Kind, LeaseSeen, Rotation, StepRecord, new_id

__all__ = ["DynamoJournal", "create_table"]

ATTEMPTS = 5  # rounds of read-decide-write before a contended write gives up


class DynamoJournal:
    """The journal in the DynamoDB table ``table`` (made by ``create_table``)."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None,
        aws: Aws | None = None,
        retention: timedelta = timedelta(days=DEFAULT_RETENTION_DAYS),
    ) -> None:
        self.table = table
        self.region = region
        self.retention = retention
        self._aws = aws
        self._quarantined: list[CorruptRecord] = []
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._epoch: str | None = None

    @property
    def epoch(self) -> str:
        """Kept in the table (``meta#journal``), so every replica agrees."""
        if self._epoch is None:
            raise JournalError(f"DynamoDB journal {self.table!r} is not open: use `async with`")
        return self._epoch

    async def __aenter__(self) -> Self:
        """Open one DynamoDB client and check the table. Raises ``JournalError`` telling
        how to create the table if it is missing; never creates it."""
        stack = AsyncExitStack()
        try:
            aws = self._aws or Aws(region=self.region)
            client = await stack.enter_async_context(aws.client("dynamodb", region=self.region))
            with table_errors(self.table, "DescribeTable"):
                described = await client.describe_table(TableName=self.table)
            check_key_schema(self.table, described["Table"])
            self._client = client
            self._epoch = await self._read_epoch()
        except BaseException:
            self._client = None
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def _read_epoch(self) -> str:
        """The table's epoch, made (once, whoever is first) if missing."""
        with table_errors(self.table, "GetItem"):
            found = await self._db.get_item(TableName=self.table, Key=META_KEY, ConsistentRead=True)
        if "Item" in found:
            return str(found["Item"]["epoch"]["S"])
        made = META_KEY | {"epoch": {"S": new_id("journal")}}
        put = {"TableName": self.table, "Item": made}
        await self._write([{"Put": put | {"ConditionExpression": "attribute_not_exists(pk)"}}])
        return await self._read_epoch()

    async def __aexit__(self, *exc: object) -> None:
        """Close the client."""
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    async def add(self, rotation: Rotation, *, expect_fence: int | None = None) -> Rotation:
        """Insert a new rotation at version 1, fenced above its target's earlier ones (and
        take its target's lock unless it is finished). Raises ``Conflict`` for a busy
        target or one whose fence moved from ``expect_fence`` (in the same transaction as
        the insert), ``Transient`` if concurrent transactions kept cancelling this one."""
        target = target_of(rotation_to_record(rotation))
        for _ in range(ATTEMPTS):
            holder, fence = await self._lock(target)
            if holder is not None and holder != rotation.rotation_id:
                raise Conflict(describe_target(rotation_to_record(rotation)), holder)
            record = added(rotation, fence, expect_fence)
            writes = [rotation_put(self.table, record, self.retention, version=None)]
            if not is_finished(record):
                writes.append(
                    lock_take(
                        self.table,
                        target,
                        rotation.rotation_id,
                        seen=fence,
                        fence=int(record["lease_fence"]),
                    )
                )
            refused = await self._write(writes)
            if refused is None:
                return rotation_from_record(record)
            if refused[0] == REFUSED:
                raise JournalError(f"rotation {rotation.rotation_id} already exists")
        raise Transient(
            "TransactWriteItems",
            "TransactionConflict",
            f"the target stayed contended for {ATTEMPTS} tries",
            {"table": self.table, "rotation_id": rotation.rotation_id},
        )

    async def target_fence(self, target: tuple[str, str, Kind, str]) -> int:
        """The fence the target's lock item keeps (0: never rotated)."""
        account, user, kind, slot = target
        return (await self._lock((account, user, str(kind), slot)))[1]

    async def target_state(self, target: tuple[str, str, Kind, str]) -> TargetState:
        """From the target's lock item: its fence, its holder (busy), and when the last
        rotation to hold it finished (``lock_free``). A lock freed by an older version,
        which kept no time, counts as changed now."""
        account, user, kind, slot = target
        item = await self._lock_item((account, user, str(kind), slot))
        if not item:
            return TargetState(fence=0, busy=False, changed_at=None)
        return TargetState(
            fence=int(item.get("fence", {}).get("N", 0)),
            busy=bool(item.get("rotation_id", {}).get("S")),
            changed_at=changed_at(item.get("changed_at", {}).get("S")),
        )

    async def get(self, rotation_id: str) -> Rotation:
        """The rotation with that ID. Raises ``NotFound``."""
        return rotation_from_record(await self._stored(rotation_id))

    async def save(self, rotation: Rotation) -> Rotation:
        """Compare-and-set ``rotation`` at ``version`` + 1. Raises ``LeaseLost``, ``NotFound``,
        or ``Conflict`` when reopening a rotation whose target was taken."""
        record = await self._update(rotation.rotation_id, lambda stored: saved(stored, rotation))
        return rotation_from_record(record)

    async def acquire(
        self,
        rotation_id: str,
        owner: str,
        ttl: timedelta,
        now: datetime,
        *,
        takeover: LeaseSeen | None = None,
    ) -> Rotation:
        """Take, extend or take over the lease for ``owner``. Raises ``LeaseLost``,
        ``NotFound``."""
        record = await self._update(rotation_id, lambda s: acquired(s, owner, ttl, now, takeover))
        return rotation_from_record(record)

    async def renew(self, rotation: Rotation, ttl: timedelta, now: datetime) -> Rotation:
        """Extend ``rotation``'s own lease (a heartbeat). Raises ``LeaseLost``, ``NotFound``."""
        record = await self._update(rotation.rotation_id, lambda s: renewed(s, rotation, ttl, now))
        return rotation_from_record(record)

    async def release(self, rotation: Rotation) -> Rotation:
        """Give up ``rotation.lease``; a no-op returning the stored record if not ours."""
        record = await self._update(rotation.rotation_id, lambda s: released(s, rotation))
        return rotation_from_record(record)

    async def list_active(self) -> list[Rotation]:
        """Every unfinished rotation, oldest first (a Scan of the whole table)."""
        active, self._quarantined = decode_rows(r for r in await self._scan() if not is_finished(r))
        return sorted(active, key=lambda r: (r.created_at, r.rotation_id))

    async def list_rotations(self, *, user: str | None = None, limit: int = 100) -> list[Rotation]:
        """Up to ``limit`` rotations newest first, optionally only ``user``'s (a Scan)."""
        found, self._quarantined = decode_rows(await self._scan(user))
        found.sort(key=lambda r: (r.created_at, r.rotation_id), reverse=True)
        return found[: max(limit, 0)]

    def quarantined(self) -> list[CorruptRecord]:
        """The rows the last listing skipped (they do not decode)."""
        return list(self._quarantined)

    async def record_step(self, record: StepRecord) -> None:
        """Append one step outcome to a rotation's history."""
        key = step_key(record.rotation_id, record.at, time.time_ns(), uuid.uuid4().hex[:8])
        item = to_item(key, step_to_record(record))
        item[TTL_ATTRIBUTE] = {"N": str(expires_at(record.at.isoformat(), self.retention))}
        with table_errors(self.table, "PutItem"):
            await self._db.put_item(TableName=self.table, Item=item)

    async def steps(self, rotation_id: str) -> list[StepRecord]:
        """A rotation's step history, oldest first (empty for an unknown ID)."""
        pages = self._db.get_paginator("query").paginate(
            TableName=self.table,
            ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :steps)",
            ExpressionAttributeValues={
                ":pk": rotation_key(rotation_id)[PK],
                ":steps": {"S": STEP_PREFIX},
            },
        )
        with table_errors(self.table, "Query"):
            return [step_from_record(from_item(i)) async for page in pages for i in page["Items"]]

    @property
    def _db(self) -> Any:
        if self._client is None:
            raise JournalError(f"DynamoDB journal {self.table!r} is not open: use `async with`")
        return self._client

    async def _stored(self, rotation_id: str) -> Record:
        with table_errors(self.table, "GetItem"):
            found = await self._db.get_item(
                TableName=self.table, Key=rotation_key(rotation_id), ConsistentRead=True
            )
        if "Item" not in found:
            raise NotFound(rotation_id)
        return from_item(found["Item"])

    async def _scan(self, user: str | None = None) -> list[Record]:
        """Every stored rotation (of ``user``): a Scan of the whole table, every page."""
        condition = "sk = :rotation"
        values: Item = {":rotation": {"S": ROTATION_SK}}
        extra: dict[str, Any] = {}
        if user is not None:
            condition += " AND #user = :user"  # USER is a reserved word
            values[":user"] = {"S": user}
            extra["ExpressionAttributeNames"] = {"#user": "user"}
        pages = self._db.get_paginator("scan").paginate(
            TableName=self.table,
            ConsistentRead=True,
            FilterExpression=condition,
            ExpressionAttributeValues=values,
            **extra,
        )
        with table_errors(self.table, "Scan"):
            return [from_item(item) async for page in pages for item in page["Items"]]

    async def _update(self, rotation_id: str, decide: Callable[[Record], Record | None]) -> Record:
        """Read, ``decide`` the record to write (None: write nothing), and write it if the
        stored version is still the one read; if not, read and decide again."""
        for _ in range(ATTEMPTS):
            stored = await self._stored(rotation_id)
            record = decide(stored)
            if record is None:
                return stored
            writes = [rotation_put(self.table, record, self.retention, version=stored["version"])]
            writes += self._lock_changes(stored, record)
            refused = await self._write(writes)
            if refused is None:
                return record
            if refused[0] != REFUSED and REFUSED in refused[1:]:  # only a lock was refused
                await self._raise_for_lock(stored, record)
        raise LeaseLost(rotation_id, f"the record kept changing during {ATTEMPTS} tries")

    def _lock_changes(self, stored: Record, record: Record) -> list[Write]:
        """The lock writes that go with replacing ``stored`` by ``record``: free the old
        target when it finishes, take the new one when it is (re)opened."""
        old = None if is_finished(stored) else target_of(stored)
        new = None if is_finished(record) else target_of(record)
        if old == new:
            return []
        rotation_id, fence = record["rotation_id"], int(record["lease_fence"])
        changes = []
        if old:  # the finishing write's time: every change in IAM it made came before it
            changes.append(lock_free(self.table, old, rotation_id, fence, record["updated_at"]))
        return changes + ([lock_put(self.table, new, rotation_id, fence)] if new else [])

    async def _raise_for_lock(self, stored: Record, record: Record) -> None:
        """A lock write was refused: raise ``Conflict`` if another rotation holds the new
        target, ``JournalError`` if it holds the old one; return if the lock was freed."""
        rotation_id = record["rotation_id"]
        if not is_finished(record):
            holder = await self._lock_holder(target_of(record))
            if holder not in (None, rotation_id):
                raise Conflict(describe_target(record), str(holder))
        if not is_finished(stored):
            holder = await self._lock_holder(target_of(stored))
            if holder not in (None, rotation_id):
                raise JournalError(
                    f"DynamoDB journal {self.table!r}: the lock of {describe_target(stored)}"
                    f" is held by {holder}, not by {rotation_id}"
                )

    async def _lock_holder(self, target: tuple[str, ...]) -> str | None:
        return (await self._lock(target))[0]

    async def _lock(self, target: tuple[str, ...]) -> tuple[str | None, int]:
        """The rotation holding ``target``'s lock (None: free) and the fence it keeps."""
        item = await self._lock_item(target)
        holder = item.get("rotation_id", {}).get("S")
        return (str(holder) if holder else None), int(item.get("fence", {}).get("N", 0))

    async def _lock_item(self, target: tuple[str, ...]) -> dict[str, Any]:
        """``target``'s lock item ({}: the target was never rotated)."""
        with table_errors(self.table, "GetItem"):
            found = await self._db.get_item(
                TableName=self.table, Key=lock_key(target), ConsistentRead=True
            )
        return dict(found.get("Item") or {})

    async def _write(self, writes: list[Write]) -> list[str] | None:
        """Apply ``writes`` atomically (one PutItem, else TransactWriteItems). Returns None
        if applied, else one reason code per write (``ConditionalCheckFailed`` for the ones
        whose condition failed)."""
        operation = "TransactWriteItems" if len(writes) > 1 else "PutItem"
        with table_errors(self.table, operation):
            try:
                if len(writes) > 1:
                    await self._db.transact_write_items(TransactItems=writes)
                else:
                    await self._db.put_item(**writes[0]["Put"])
            except ClientError as exc:
                refused = refusal(exc, operation, self.table)
                if refused is None:
                    raise
                return refused
        return None
