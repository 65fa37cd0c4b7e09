"""The DynamoDB journal's table: its keys, how records become items, the conditional
writes the journal makes, and ``create_table``.

The table design is drawn in ``rotator.journal.dynamodb``. An item holds every key of its
record: ``None`` is stored as ``NULL`` (never left out), text as ``S``, booleans as
``BOOL`` and numbers as ``N``. DynamoDB normalises number text (``604800.0`` comes back as
``604800``), so a number's Python type comes from its name, not its text: the counters are
``int``, everything else (the durations) ``float``.

botocore errors become journal errors here: ``Transient`` (throttling, 5xx, lost
connections) propagates; anything else is a ``JournalError`` naming the table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from rotator.aws import Aws, aws_errors
from rotator.errors import JournalError, NoSuchEntity, Permanent, Transient
from rotator.model import RotationState

PK, SK = "pk", "sk"
ROTATION_SK = "rotation"
LOCK_SK = "lock"
META_KEY = {PK: {"S": "meta#journal"}, SK: {"S": "epoch"}}
STEP_PREFIX = "step#"
TTL_ATTRIBUTE = "expires_at"
DEFAULT_RETENTION_DAYS = 400
_KEY_SCHEMA = {PK: "HASH", SK: "RANGE"}
_INTEGERS = frozenset({"version", "lease_fence", "fence", TTL_ATTRIBUTE})
_TABLE_WAIT = {"Delay": 2, "MaxAttempts": 150}  # up to five minutes for ACTIVE

Item = dict[str, dict[str, Any]]  # an item in DynamoDB's typed JSON: {"name": {"S": "..."}}
Write = dict[str, dict[str, Any]]  # one TransactWriteItems element: {"Put": {...}}

REFUSED = "ConditionalCheckFailed"  # the cancellation reason of a write whose condition failed
_RETRYABLE = frozenset({"None", REFUSED, "TransactionConflict"})
_THROTTLED = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"})
# A target's lock item stays once made: it keeps the target's fence. It is free when it
# names no rotation.
_OURS_OR_FREE = "attribute_not_exists(pk) OR attribute_not_exists(rotation_id) OR rotation_id = :id"
_FREE_AT = "attribute_not_exists(pk) OR (attribute_not_exists(rotation_id) AND fence = :fence)"


def rotation_key(rotation_id: str) -> Item:
    """The key of a rotation's item."""
    return {PK: {"S": f"rot#{rotation_id}"}, SK: {"S": ROTATION_SK}}


def lock_key(target: tuple[str, ...]) -> Item:
    """The key of the lock item that an unfinished rotation of ``target`` holds.
    ``#`` cannot occur in an account ID, an IAM user name, a kind or a service name."""
    return {PK: {"S": "target#" + "#".join(target)}, SK: {"S": LOCK_SK}}


def step_key(rotation_id: str, at: datetime, written_ns: int, nonce: str) -> Item:
    """The key of one step item: under its rotation, ordered by ``at`` (in UTC, fixed
    width, so text order is time order), then by when it was written."""
    utc = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sort_key = f"{STEP_PREFIX}{utc}#{written_ns:020d}#{nonce}"
    return {PK: {"S": f"rot#{rotation_id}"}, SK: {"S": sort_key}}


def to_item(key: Item, values: Mapping[str, Any]) -> Item:
    """``key`` plus every value of ``values`` in DynamoDB's typed form."""
    return key | {name: _encode(name, value) for name, value in values.items()}


def from_item(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The record an item holds (without its key and TTL attributes)."""
    return {
        name: _decode(name, typed)
        for name, typed in item.items()
        if name not in (PK, SK, TTL_ATTRIBUTE)
    }


def _encode(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    raise JournalError(f"cannot store {name}={value!r} in DynamoDB")


def _decode(name: str, typed: Mapping[str, Any]) -> Any:
    ((kind, raw),) = typed.items()
    if kind == "NULL":
        return None
    if kind == "N":
        return int(raw) if name in _INTEGERS else float(raw)
    if kind in ("S", "BOOL"):
        return raw
    raise JournalError(f"unexpected DynamoDB type {kind} for {name}")


def rotation_put(
    table: str, record: Mapping[str, Any], retention: timedelta, *, version: int | None
) -> Write:
    """Put ``record``: only if absent (``version`` None) or stored at ``version``. A
    finished rotation gets ``expires_at``: ``finished_at`` (else ``updated_at``) + retention."""
    item = to_item(rotation_key(record["rotation_id"]), record)
    if RotationState(record["state"]).finished:
        finished = record["finished_at"] or record["updated_at"]
        item[TTL_ATTRIBUTE] = {"N": str(expires_at(finished, retention))}
    put: dict[str, Any] = {"TableName": table, "Item": item}
    if version is None:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        put["ConditionExpression"] = "#version = :version"
        put["ExpressionAttributeNames"] = {"#version": "version"}
        put["ExpressionAttributeValues"] = {":version": {"N": str(version)}}
    return {"Put": put}


def lock_take(
    table: str, target: tuple[str, ...], rotation_id: str, *, seen: int, fence: int
) -> Write:
    """Take ``target``'s lock for a new rotation ``rotation_id`` with ``fence``, only if it
    is free and its fence is still ``seen`` (or it was never made)."""
    item = lock_key(target) | {"rotation_id": {"S": rotation_id}, "fence": {"N": str(fence)}}
    condition = {"ConditionExpression": _FREE_AT, "ExpressionAttributeValues": _n(seen)}
    return {"Put": {"TableName": table, "Item": item} | condition}


def lock_put(table: str, target: tuple[str, ...], rotation_id: str, fence: int) -> Write:
    """Take ``target``'s lock for ``rotation_id`` (reopened), only if it is free (or
    already ours)."""
    item = lock_key(target) | {"rotation_id": {"S": rotation_id}, "fence": {"N": str(fence)}}
    return {"Put": {"TableName": table, "Item": item} | _ours_or_free(rotation_id)}


def lock_free(
    table: str, target: tuple[str, ...], rotation_id: str, fence: int, changed_at: str
) -> Write:
    """Free ``target``'s lock, keeping ``fence`` (the finished rotation's last) and when it
    finished (``changed_at``, its record's ``updated_at``), only if ``rotation_id`` holds
    it (or nobody does)."""
    item = lock_key(target) | {"fence": {"N": str(fence)}, "changed_at": {"S": changed_at}}
    return {"Put": {"TableName": table, "Item": item} | _ours_or_free(rotation_id)}


def _n(fence: int) -> Item:
    return {":fence": {"N": str(fence)}}


def _ours_or_free(rotation_id: str) -> dict[str, Any]:
    values = {":id": {"S": rotation_id}}
    return {"ConditionExpression": _OURS_OR_FREE, "ExpressionAttributeValues": values}


def refusal(exc: ClientError, operation: str, table: str) -> list[str] | None:
    """The reason code per write of a refused conditional write or transaction
    (``REFUSED``, ``TransactionConflict`` or ``None``), or None if ``exc`` is another
    error. Raises ``Transient`` if DynamoDB cancelled a transaction for throttling."""
    error = exc.response.get("Error", {})
    code = error.get("Code")
    if code == "ConditionalCheckFailedException":
        return [REFUSED]
    if code != "TransactionCanceledException":
        return None
    reasons = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons", [])]
    throttled = _THROTTLED.intersection(reasons)
    if throttled:
        message = str(error.get("Message", ""))
        raise Transient(operation, min(throttled), message, {"table": table}) from None
    return reasons if reasons and _RETRYABLE.issuperset(reasons) else None


def missing_table(table: str) -> JournalError:
    """The error for a journal table that does not exist, with how to create it."""
    return JournalError(
        f"the DynamoDB journal table {table!r} does not exist:"
        " create it with `rotator journal init --config F` (F: your config file)"
    )


@contextmanager
def table_errors(table: str, operation: str) -> Iterator[None]:
    """Convert botocore errors of ``operation`` on ``table``: ``Transient`` propagates,
    a missing table or any other failure becomes ``JournalError`` naming the table."""
    try:
        with aws_errors(operation, table=table):
            yield
    except NoSuchEntity:
        raise missing_table(table) from None
    except Permanent as exc:
        raise JournalError(f"DynamoDB journal: {exc}") from exc


def check_key_schema(table: str, description: Mapping[str, Any]) -> None:
    """Raise ``JournalError`` unless the described table is keyed ``pk`` + ``sk``."""
    keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
    if keys != _KEY_SCHEMA:
        raise JournalError(
            f"DynamoDB table {table!r} is keyed {keys}, not pk (HASH) + sk (RANGE):"
            " it is not a rotator journal"
        )


async def create_table(
    table: str,
    *,
    region: str | None,
    aws: Aws | None = None,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> bool:
    """Create the journal table (on-demand billing, tagged ``managed-by=rotator``), wait
    until it is ACTIVE and make sure TTL on ``expires_at`` is enabled.

    Idempotent: returns True if it created the table, False if it existed (TTL is still
    enabled then). ``retention_days`` is recorded as the ``rotator-retention-days`` tag of
    a new table; the expiry of each record is set by ``DynamoJournal(retention=...)``.
    Raises ``JournalError`` if an existing table is not keyed like a journal or expires
    items by another attribute, ``Transient`` if AWS is throttling or unreachable.
    """
    aws = aws or Aws(region=region)
    async with aws.client("dynamodb", region=region) as client:
        created = await _create_if_missing(client, table, retention_days)
        with table_errors(table, "DescribeTable"):
            waiter = client.get_waiter("table_exists")
            await waiter.wait(TableName=table, WaiterConfig=_TABLE_WAIT)
        await _enable_ttl(client, table)
    return created


async def _create_if_missing(client: Any, table: str, retention_days: int) -> bool:
    try:
        with aws_errors("DescribeTable", table=table):
            described = await client.describe_table(TableName=table)
    except NoSuchEntity:
        pass
    else:
        check_key_schema(table, described["Table"])
        return False
    tags = {"managed-by": "rotator", "rotator-retention-days": str(retention_days)}
    try:
        with aws_errors("CreateTable", table=table):
            await client.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": n, "KeyType": t} for n, t in _KEY_SCHEMA.items()],
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in (PK, SK)],
                BillingMode="PAY_PER_REQUEST",
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
    except Permanent as exc:
        if exc.code == "ResourceInUseException":  # created meanwhile by someone else
            return False
        raise JournalError(f"DynamoDB journal: {exc}") from exc
    return True


async def _enable_ttl(client: Any, table: str) -> None:
    with table_errors(table, "DescribeTimeToLive"):
        described = await client.describe_time_to_live(TableName=table)
    ttl = described.get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        if ttl.get("AttributeName") != TTL_ATTRIBUTE:
            raise JournalError(
                f"DynamoDB table {table!r} expires items by {ttl.get('AttributeName')!r},"
                f" not {TTL_ATTRIBUTE!r}: it is not a rotator journal"
            )
        return
    with table_errors(table, "UpdateTimeToLive"):
        await client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )


def expires_at(finished: str, retention: timedelta) -> int:
    """The TTL of a record finished at ``finished`` (ISO text): epoch seconds."""
    return int((datetime.fromisoformat(finished) + retention).timestamp())
