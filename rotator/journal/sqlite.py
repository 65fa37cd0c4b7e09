"""The journal in one SQLite file, shared safely by several processes (a daemon and a CLI).

Every write is one ``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock *before*
reading, so the read-decide-write of ``save``, ``acquire`` and ``release`` is a
compare-and-set across processes. The decisions are the pure rules of
``rotator.journal.memory``, so both journals keep one contract. A partial unique index
keeps one unfinished rotation per target in the database itself, whoever writes. WAL lets
readers run beside the writer; ``busy_timeout`` makes a writer wait for the lock rather
than fail. sqlite3 errors become ``JournalError`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

import aiosqlite

from rotator.errors import Conflict, CorruptRecord, JournalError, LeaseLost, NotFound
from rotator.journal.base import (
    decode_rows,
    rotation_from_record,
    rotation_to_record,
    step_from_record,
    step_to_record,
)
from rotator.journal.rules import (
    Record,
    acquired,
    added,
    describe_target,
    is_finished,
    released,
    renewed,
    saved,
)
from rotator.model import Kind, LeaseSeen, Rotation, StepRecord, new_id

SCHEMA_VERSION = 2  # kept in PRAGMA user_version (2: the meta table, the target index)
BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's write lock

# One column per key of rotation_to_record, in its order, plus the derived ``finished``.
_COLUMNS: dict[str, str] = {
    "rotation_id": "TEXT PRIMARY KEY",
    "account": "TEXT NOT NULL",
    "user": "TEXT NOT NULL",
    "kind": "TEXT NOT NULL",
    "slot": "TEXT NOT NULL",
    "rule": "TEXT NOT NULL",
    "state": "TEXT NOT NULL",
    "old_credential_id": "TEXT",
    "new_credential_id": "TEXT",
    "delete_first": "TEXT",
    "emergency": "INTEGER NOT NULL",
    "deactivate_after": "REAL NOT NULL",
    "delete_after": "REAL NOT NULL",
    "created_at": "TEXT NOT NULL",
    "updated_at": "TEXT NOT NULL",
    "creating_at": "TEXT",
    "promoted_at": "TEXT",
    "deactivated_at": "TEXT",
    "finished_at": "TEXT",
    "held_since": "TEXT",
    "reason": "TEXT NOT NULL",
    "known_ids": "TEXT NOT NULL",
    "version": "INTEGER NOT NULL",
    "lease_owner": "TEXT",
    "lease_expires_at": "TEXT",
    "lease_fence": "INTEGER NOT NULL",
    "finished": "INTEGER NOT NULL",
}
_RECORD_KEYS = frozenset(_COLUMNS) - {"finished"}

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rotations ("
    + ", ".join(f"{name} {decl}" for name, decl in _COLUMNS.items())
    + ")",
    "CREATE UNIQUE INDEX IF NOT EXISTS rotations_one_unfinished_per_target"
    " ON rotations (account, user, kind, slot) WHERE finished = 0",
    "CREATE INDEX IF NOT EXISTS rotations_by_user ON rotations (user)",
    "CREATE TABLE IF NOT EXISTS steps ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, rotation_id TEXT NOT NULL, at TEXT NOT NULL,"
    " step TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL, run_id TEXT NOT NULL,"
    " credential_id TEXT)",
    "CREATE INDEX IF NOT EXISTS steps_by_rotation ON steps (rotation_id, id)",
    "CREATE INDEX IF NOT EXISTS rotations_by_target ON rotations (account, user, kind, slot)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_EPOCH_INIT = "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)"
_EPOCH = "SELECT value FROM meta WHERE key = 'epoch'"
_TARGET_FENCE = (
    "SELECT COALESCE(MAX(lease_fence), 0) FROM rotations"
    " WHERE account = ? AND user = ? AND kind = ? AND slot = ?"
)

# Column names come from _COLUMNS above, never from input; values are always bound.
_INSERT = "INSERT INTO rotations ({}) VALUES ({})".format(  # noqa: S608
    ", ".join(_COLUMNS), ", ".join(f":{name}" for name in _COLUMNS)
)
_UPDATE = "UPDATE rotations SET {} WHERE {}".format(  # noqa: S608
    ", ".join(f"{name} = :{name}" for name in _COLUMNS if name != "rotation_id"),
    "rotation_id = :rotation_id AND version = :expected",
)
_SELECT = "SELECT * FROM rotations WHERE rotation_id = ?"
_UNFINISHED_FOR_TARGET = (
    "SELECT rotation_id FROM rotations"
    " WHERE account = ? AND user = ? AND kind = ? AND slot = ? AND finished = 0"
)
# julianday() orders instants across UTC offsets; the text and rowid break ties stably.
_ACTIVE = (
    "SELECT * FROM rotations WHERE finished = 0 ORDER BY julianday(created_at), created_at, rowid"
)
_RECENT = (
    "SELECT * FROM rotations WHERE (:user IS NULL OR user = :user)"
    " ORDER BY julianday(created_at) DESC, created_at DESC, rowid DESC LIMIT :limit"
)
_INSERT_STEP = (
    "INSERT INTO steps (rotation_id, at, step, outcome, reason, run_id, credential_id)"
    " VALUES (:rotation_id, :at, :step, :outcome, :reason, :run_id, :credential_id)"
)
_STEPS = "SELECT * FROM steps WHERE rotation_id = ? ORDER BY id"


GROUP_MAX = 64  # writes committed together at most


class _Group:
    """The writes of one open transaction, committed together."""

    def __init__(self) -> None:
        self.writes = 0
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class SqliteJournal:
    """The journal in the SQLite file ``path`` (created 0600, in 0700 directories)."""

    def __init__(self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # one transaction at a time on this connection
        self._group: _Group | None = None  # the writes of the open transaction
        self._writers_waiting = 0  # writes queued for the lock
        self._quarantined: list[CorruptRecord] = []
        self._epoch: str | None = None

    @property
    def epoch(self) -> str:
        """Made with the file (its ``meta`` table), so every process sharing it agrees."""
        if self._epoch is None:
            raise JournalError(f"journal {self.path} is not open: use 'async with'")
        return self._epoch

    async def __aenter__(self) -> Self:
        """Create the file and schema if missing, and open the connection."""
        try:
            _create_private_file(self.path)
            # isolation_level=None: no implicit transactions, each one is begun explicitly;
            # timeout is SQLite's busy_timeout.
            self._db = await aiosqlite.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None
            )
            self._db.row_factory = aiosqlite.Row
            await self._db.execute("PRAGMA journal_mode = WAL")
            await self._migrate()
        except (OSError, sqlite3.Error) as exc:
            await self.__aexit__()
            raise JournalError(f"journal {self.path}: {exc}") from exc
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the connection."""
        if self._db is not None:
            db, self._db = self._db, None
            async with self._lock:
                await self._commit(db)
            await db.close()

    async def add(self, rotation: Rotation, *, expect_fence: int | None = None) -> Rotation:
        """Insert a new rotation at version 1, fenced above its target's earlier ones.
        Raises ``Conflict`` for a busy target or one that moved since ``expect_fence``."""
        async with self._transaction() as db:
            probe = rotation_to_record(rotation)
            try:
                record = added(rotation, await _target_fence(db, probe), expect_fence)
                await db.execute(_INSERT, _row(record))
            except sqlite3.IntegrityError as exc:
                await self._raise_for_insert(db, probe, exc)
            except Conflict:
                await self._raise_if_busy(db, probe)
                raise
        return rotation_from_record(record)

    async def target_fence(self, target: tuple[str, str, Kind, str]) -> int:
        """The highest fence any rotation of ``target`` reached (0: none)."""
        account, user, kind, slot = target
        record = {"account": account, "user": user, "kind": str(kind), "slot": slot}
        async with self._transaction(write=False) as db:
            return await _target_fence(db, record)

    async def get(self, rotation_id: str) -> Rotation:
        """The rotation with that ID. Raises ``NotFound``."""
        async with self._transaction(write=False) as db:
            return rotation_from_record(await _stored(db, rotation_id))

    async def save(self, rotation: Rotation) -> Rotation:
        """Compare-and-set ``rotation`` at ``version`` + 1. Raises ``LeaseLost``, ``NotFound``."""
        async with self._transaction() as db:
            stored = await _stored(db, rotation.rotation_id)
            record = saved(stored, rotation)
            try:
                await _update(db, record, expected=stored["version"])
            except sqlite3.IntegrityError as exc:
                await self._raise_conflict(db, record, exc)
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
        async with self._transaction() as db:
            stored = await _stored(db, rotation_id)
            record = acquired(stored, owner, ttl, now, takeover)
            await _update(db, record, expected=stored["version"])
        return rotation_from_record(record)

    async def renew(self, rotation: Rotation, ttl: timedelta, now: datetime) -> Rotation:
        """Extend ``rotation``'s own lease (a heartbeat). Raises ``LeaseLost``, ``NotFound``."""
        async with self._transaction() as db:
            stored = await _stored(db, rotation.rotation_id)
            record = renewed(stored, rotation, ttl, now)
            await _update(db, record, expected=stored["version"])
        return rotation_from_record(record)

    async def release(self, rotation: Rotation) -> Rotation:
        """Give up ``rotation.lease``; a no-op returning the stored record if not ours."""
        async with self._transaction() as db:
            stored = await _stored(db, rotation.rotation_id)
            record = released(stored, rotation)
            if record is None:
                return rotation_from_record(stored)
            await _update(db, record, expected=stored["version"])
        return rotation_from_record(record)

    async def list_active(self) -> list[Rotation]:
        """Every unfinished rotation, oldest first."""
        async with self._transaction(write=False) as db, db.execute(_ACTIVE) as cursor:
            rows = [_record(row) async for row in cursor]
        return self._decoded(rows)

    async def list_rotations(self, *, user: str | None = None, limit: int = 100) -> list[Rotation]:
        """Up to ``limit`` rotations newest first, optionally only ``user``'s."""
        params = {"user": user, "limit": max(limit, 0)}
        async with self._transaction(write=False) as db, db.execute(_RECENT, params) as cursor:
            rows = [_record(row) async for row in cursor]
        return self._decoded(rows)

    def _decoded(self, rows: list[Record]) -> list[Rotation]:
        good, self._quarantined = decode_rows(rows)
        return good

    def quarantined(self) -> list[CorruptRecord]:
        """The rows the last listing skipped (they do not decode)."""
        return list(self._quarantined)

    async def record_step(self, record: StepRecord) -> None:
        """Append one step outcome to a rotation's history."""
        async with self._transaction() as db:
            await db.execute(_INSERT_STEP, step_to_record(record))

    async def steps(self, rotation_id: str) -> list[StepRecord]:
        """A rotation's step history, oldest first (empty for an unknown ID)."""
        async with self._transaction(write=False) as db, db.execute(_STEPS, (rotation_id,)) as cur:
            return [step_from_record(dict(row)) async for row in cur]

    @asynccontextmanager
    async def _transaction(self, *, write: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction on this connection; ``BEGIN IMMEDIATE`` takes the write lock
        up front so a write's read-decide-write cannot interleave with another process.

        Writes commit in groups: a write that finds other writes of this process queued
        behind it leaves the transaction open for them (each write is its own savepoint,
        undone alone if it fails), and the last one of the group commits. Every write
        still returns only once it is committed and synced, so what a caller saw written
        survives a crash as before; the group shares one fsync instead of one each."""
        if self._db is None:
            raise JournalError(f"journal {self.path} is not open: use 'async with'")
        db = self._db
        if not write:
            async with self._lock:
                try:
                    if self._group is not None:  # a read sees only committed writes
                        await self._commit(db)
                    await db.execute("BEGIN")
                    try:
                        yield db
                    finally:
                        await db.commit()
                except sqlite3.Error as exc:
                    raise JournalError(f"journal {self.path}: {exc}") from exc
            return
        self._writers_waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._writers_waiting -= 1
        try:
            try:
                if self._group is None:
                    await db.execute("BEGIN IMMEDIATE")
                    self._group = _Group()
                group = self._group
                group.writes += 1
                await db.execute("SAVEPOINT write")
                try:
                    yield db
                except BaseException:
                    await db.execute("ROLLBACK TO write")
                    await db.execute("RELEASE write")
                    raise
                await db.execute("RELEASE write")
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path}: {exc}") from exc
            finally:
                if self._group is not None and (
                    self._writers_waiting == 0 or self._group.writes >= GROUP_MAX
                ):
                    await self._commit(db)
        finally:
            self._lock.release()
        await asyncio.shield(group.committed)

    async def _commit(self, db: aiosqlite.Connection) -> None:
        """Commit the open group of writes and tell its writers how it went."""
        group, self._group = self._group, None
        if group is None:
            return
        try:
            await db.commit()
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await db.rollback()
            group.committed.set_exception(JournalError(f"journal {self.path}: {exc}"))
            group.committed.exception()  # retrieved: a writer that already left is fine
            return
        group.committed.set_result(None)

    async def _migrate(self) -> None:
        async with self._transaction() as db, db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
            found = int(row[0]) if row else 0
            if found > SCHEMA_VERSION:
                raise JournalError(
                    f"journal {self.path} has schema version {found};"
                    f" this rotator knows up to {SCHEMA_VERSION}"
                )
            for statement in _SCHEMA:
                await db.execute(statement)
            await db.execute(_EPOCH_INIT, (new_id("journal"),))
            async with db.execute(_EPOCH) as epoch:
                self._epoch = str((await epoch.fetchone())[0])  # type: ignore[index]
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    async def _raise_for_insert(
        self, db: aiosqlite.Connection, record: Record, exc: sqlite3.IntegrityError
    ) -> None:
        rotation_id = record["rotation_id"]
        async with db.execute(_SELECT, (rotation_id,)) as cursor:
            if await cursor.fetchone() is not None:
                raise JournalError(f"rotation {rotation_id} already exists") from None
        await self._raise_conflict(db, record, exc)

    async def _raise_if_busy(self, db: aiosqlite.Connection, record: Record) -> None:
        """Raise ``Conflict`` naming the unfinished rotation of ``record``'s target, if any."""
        params = (record["account"], record["user"], record["kind"], record["slot"])
        async with db.execute(_UNFINISHED_FOR_TARGET, params) as cursor:
            row = await cursor.fetchone()
        if row is not None:
            raise Conflict(describe_target(record), str(row[0])) from None

    async def _raise_conflict(
        self, db: aiosqlite.Connection, record: Record, exc: sqlite3.IntegrityError
    ) -> None:
        """Raise ``Conflict`` naming the unfinished rotation that holds ``record``'s target
        (the partial unique index refused the write), or ``JournalError`` if none does."""
        params = (record["account"], record["user"], record["kind"], record["slot"])
        async with db.execute(_UNFINISHED_FOR_TARGET, params) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise JournalError(f"journal {self.path}: {exc}") from exc
        raise Conflict(describe_target(record), str(row[0])) from None


async def _stored(db: aiosqlite.Connection, rotation_id: str) -> Record:
    async with db.execute(_SELECT, (rotation_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(rotation_id)
    return _record(row)


async def _target_fence(db: aiosqlite.Connection, record: Record) -> int:
    params = (record["account"], record["user"], record["kind"], record["slot"] or "")
    async with db.execute(_TARGET_FENCE, params) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _update(db: aiosqlite.Connection, record: Record, *, expected: int) -> None:
    async with db.execute(_UPDATE, _row(record) | {"expected": expected}) as cursor:
        if cursor.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; never write blind
            raise LeaseLost(record["rotation_id"], "the record changed during the write")


def _row(record: Record) -> dict[str, Any]:
    """The parameters of a rotations row: the record and its derived ``finished``."""
    if record.keys() != _RECORD_KEYS:  # rotation_to_record changed: fail, never drop a field
        raise JournalError(f"record fields {sorted(record)} do not match the rotations table")
    return record | {"finished": int(is_finished(record))}


def _record(row: aiosqlite.Row) -> Record:
    record = dict(row)
    del record["finished"]
    return record


def _create_private_file(path: Path) -> None:
    """Create ``path`` (mode 0600) and its missing parent directories (mode 0700).
    An existing file is left as it is."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
