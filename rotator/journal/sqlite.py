"""The journal in one SQLite file, shared safely by several processes (a daemon and a CLI).

Every write is one ``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock *before*
reading, so the read-decide-write of ``save``, ``acquire`` and ``release`` is a
compare-and-set across processes. The decisions are the pure rules of
``rotator.journal.memory``, so both journals keep one contract. A partial unique index
keeps one unfinished rotation per target in the database itself, whoever writes. WAL lets
readers run beside the writer; ``busy_timeout`` makes a writer wait for the lock rather
than fail. sqlite3 errors become ``JournalError`` here and nowhere else.

Each journal operation is one plain function over the ``sqlite3`` connection, run whole on
the journal's own worker thread: one hand-off to the thread and one back per operation,
rather than an awaited round trip for every statement, cursor and fetch. Writes queued
while the thread is busy are committed together (group commit, one fsync for the group),
each in its own savepoint; every write still returns only once it is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self, TypeVar

from rotator.errors import Conflict, CorruptRecord, JournalError, LeaseLost, NotFound
from rotator.journal.base import (
    TargetState,
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
    target_state,
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
_TARGET_STATE = (
    "SELECT lease_fence, state, updated_at FROM rotations"
    " WHERE account = ? AND user = ? AND kind = ? AND slot = ?"
)
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

T = TypeVar("T")
_Op = Callable[[sqlite3.Connection], Any]


class _Write:
    """One queued write: its operation, and where its outcome goes once committed."""

    __slots__ = ("error", "future", "loop", "op", "result")

    def __init__(self, op: _Op, loop: asyncio.AbstractEventLoop) -> None:
        self.op = op
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.result: Any = None
        self.error: BaseException | None = None

    def settle(self) -> None:
        """On the event loop: hand the outcome to the waiting writer (if still waiting)."""
        if self.future.cancelled():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


class SqliteJournal:
    """The journal in the SQLite file ``path`` (created 0600, in 0700 directories)."""

    def __init__(self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        # The one thread that touches the connection: operations run in the order given.
        self._thread: ThreadPoolExecutor | None = None
        self._queued: deque[_Write] = deque()  # writes waiting for the thread
        self._queued_lock = threading.Lock()
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
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rotator-journal")
        try:
            await self._on_thread(self._open)
            await self._write(self._migrate)
        except (OSError, sqlite3.Error) as exc:
            await self.__aexit__()
            raise JournalError(f"journal {self.path}: {exc}") from exc
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def _open(self) -> None:
        _create_private_file(self.path)
        # isolation_level=None: no implicit transactions, each one is begun explicitly;
        # timeout is SQLite's busy_timeout.
        db = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        db.row_factory = sqlite3.Row
        self._db = db
        # Turning a new file to WAL takes an exclusive lock without waiting for it (no busy
        # handler): two processes opening a new journal at once would fail one of them.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    async def __aexit__(self, *exc: object) -> None:
        """Finish the queued writes and close the connection."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            # Queued after every write already given to the thread: they are done first.
            await asyncio.get_running_loop().run_in_executor(thread, self._close)
        finally:
            thread.shutdown(wait=False)

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    async def add(self, rotation: Rotation, *, expect_fence: int | None = None) -> Rotation:
        """Insert a new rotation at version 1, fenced above its target's earlier ones.
        Raises ``Conflict`` for a busy target or one that moved since ``expect_fence``."""

        def op(db: sqlite3.Connection) -> Record:
            probe = rotation_to_record(rotation)
            try:
                record = added(rotation, _target_fence(db, probe), expect_fence)
                db.execute(_INSERT, _row(record))
            except sqlite3.IntegrityError as exc:
                self._raise_for_insert(db, probe, exc)
            except Conflict:
                _raise_if_busy(db, probe)
                raise
            return record

        return rotation_from_record(await self._write(op))

    async def target_fence(self, target: tuple[str, str, Kind, str]) -> int:
        """The highest fence any rotation of ``target`` reached (0: none)."""
        account, user, kind, slot = target
        record = {"account": account, "user": user, "kind": str(kind), "slot": slot}
        return await self._read(lambda db: _target_fence(db, record))

    async def target_state(self, target: tuple[str, str, Kind, str]) -> TargetState:
        """``target``'s fence, whether it is busy, and its last change."""
        account, user, kind, slot = target
        params = (account, user, str(kind), slot or "")
        return await self._read(
            lambda db: target_state(dict(r) for r in db.execute(_TARGET_STATE, params))
        )

    async def get(self, rotation_id: str) -> Rotation:
        """The rotation with that ID. Raises ``NotFound``."""
        return rotation_from_record(await self._read(lambda db: _stored(db, rotation_id)))

    async def save(self, rotation: Rotation) -> Rotation:
        """Compare-and-set ``rotation`` at ``version`` + 1. Raises ``LeaseLost``, ``NotFound``."""

        def op(db: sqlite3.Connection) -> Record:
            stored = _stored(db, rotation.rotation_id)
            record = saved(stored, rotation)
            try:
                _update(db, record, expected=stored["version"])
            except sqlite3.IntegrityError as exc:
                self._raise_conflict(db, record, exc)
            return record

        return rotation_from_record(await self._write(op))

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

        def op(db: sqlite3.Connection) -> Record:
            stored = _stored(db, rotation_id)
            record = acquired(stored, owner, ttl, now, takeover)
            _update(db, record, expected=stored["version"])
            return record

        return rotation_from_record(await self._write(op))

    async def renew(self, rotation: Rotation, ttl: timedelta, now: datetime) -> Rotation:
        """Extend ``rotation``'s own lease (a heartbeat). Raises ``LeaseLost``, ``NotFound``."""

        def op(db: sqlite3.Connection) -> Record:
            stored = _stored(db, rotation.rotation_id)
            record = renewed(stored, rotation, ttl, now)
            _update(db, record, expected=stored["version"])
            return record

        return rotation_from_record(await self._write(op))

    async def release(self, rotation: Rotation) -> Rotation:
        """Give up ``rotation.lease``; a no-op returning the stored record if not ours."""

        def op(db: sqlite3.Connection) -> Record:
            stored = _stored(db, rotation.rotation_id)
            record = released(stored, rotation)
            if record is None:
                return stored
            _update(db, record, expected=stored["version"])
            return record

        return rotation_from_record(await self._write(op))

    async def list_active(self) -> list[Rotation]:
        """Every unfinished rotation, oldest first."""
        rows = await self._read(lambda db: [_record(row) for row in db.execute(_ACTIVE)])
        return self._decoded(rows)

    async def list_rotations(self, *, user: str | None = None, limit: int = 100) -> list[Rotation]:
        """Up to ``limit`` rotations newest first, optionally only ``user``'s."""
        params = {"user": user, "limit": max(limit, 0)}
        rows = await self._read(lambda db: [_record(row) for row in db.execute(_RECENT, params)])
        return self._decoded(rows)

    def _decoded(self, rows: list[Record]) -> list[Rotation]:
        good, self._quarantined = decode_rows(rows)
        return good

    def quarantined(self) -> list[CorruptRecord]:
        """The rows the last listing skipped (they do not decode)."""
        return list(self._quarantined)

    async def record_step(self, record: StepRecord) -> None:
        """Append one step outcome to a rotation's history."""
        row = step_to_record(record)

        def op(db: sqlite3.Connection) -> None:
            db.execute(_INSERT_STEP, row)

        await self._write(op)

    async def steps(self, rotation_id: str) -> list[StepRecord]:
        """A rotation's step history, oldest first (empty for an unknown ID)."""
        rows = await self._read(lambda db: [dict(r) for r in db.execute(_STEPS, (rotation_id,))])
        return [step_from_record(row) for row in rows]

    async def _on_thread(self, work: Callable[[], T]) -> T:
        """``work()`` on the journal's thread, after everything given to it before."""
        if self._thread is None:
            raise JournalError(f"journal {self.path} is not open: use 'async with'")
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op`` in one read transaction (it sees only committed writes: the thread commits
        every write it was given before it starts this)."""

        def run() -> T:
            db = self._connection()
            try:
                db.execute("BEGIN")
                try:
                    return op(db)
                finally:
                    db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path}: {exc}") from exc

        return await self._on_thread(run)

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op`` in a ``BEGIN IMMEDIATE`` transaction, which takes the write lock before
        reading, so that its read-decide-write cannot interleave with another process.

        Writes commit in groups: the writes queued when the thread gets to them (up to
        ``GROUP_MAX``) share one transaction, each in its own savepoint, undone alone if
        it fails, and one commit. A write returns only once its group is committed and
        synced, so what a caller saw written survives a crash."""
        write = _Write(op, asyncio.get_running_loop())
        with self._queued_lock:
            self._queued.append(write)
        try:
            await self._on_thread(self._commit_queued)
            return await write.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            write.future.cancel()  # the write itself goes on: it may commit, unseen
            raise

    def _commit_queued(self) -> None:
        """On the thread: run the queued writes in one transaction and commit it. Another
        call may have taken them already; then there is nothing to do. If the group is not
        committed, every write of it fails (a write refused on its own keeps its error)."""
        with self._queued_lock:
            group = [self._queued.popleft() for _ in range(min(len(self._queued), GROUP_MAX))]
        if not group:
            return
        committed = False
        failure: JournalError | None = None
        try:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                for write in group:
                    self._run(db, write)
                db.execute("COMMIT")
                committed = True
            finally:
                if not committed:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            failure = JournalError(f"journal {self.path}: {exc}")
        except JournalError as exc:
            failure = exc
        finally:
            for write in group:
                if not committed and write.error is None:
                    write.error = failure or JournalError(f"journal {self.path}: not committed")
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    write.loop.call_soon_threadsafe(write.settle)

    def _run(self, db: sqlite3.Connection, write: _Write) -> None:
        """One write in its own savepoint: its error is its own, its changes undone alone."""
        db.execute("SAVEPOINT write")
        try:
            write.result = write.op(db)
        except sqlite3.Error as exc:
            db.execute("ROLLBACK TO write")
            write.error = JournalError(f"journal {self.path}: {exc}")
        except Exception as exc:  # a domain error (Conflict, LeaseLost, NotFound ...)
            db.execute("ROLLBACK TO write")
            write.error = exc
        db.execute("RELEASE write")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError(f"journal {self.path} is not open: use 'async with'")
        return self._db

    def _migrate(self, db: sqlite3.Connection) -> None:
        row = db.execute("PRAGMA user_version").fetchone()
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.path} has schema version {found};"
                f" this rotator knows up to {SCHEMA_VERSION}"
            )
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute(_EPOCH_INIT, (new_id("journal"),))
        self._epoch = str(db.execute(_EPOCH).fetchone()[0])
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _raise_for_insert(
        self, db: sqlite3.Connection, record: Record, exc: sqlite3.IntegrityError
    ) -> None:
        rotation_id = record["rotation_id"]
        if db.execute(_SELECT, (rotation_id,)).fetchone() is not None:
            raise JournalError(f"rotation {rotation_id} already exists") from None
        self._raise_conflict(db, record, exc)

    def _raise_conflict(
        self, db: sqlite3.Connection, record: Record, exc: sqlite3.IntegrityError
    ) -> None:
        """Raise ``Conflict`` naming the unfinished rotation that holds ``record``'s target
        (the partial unique index refused the write), or ``JournalError`` if none does."""
        _raise_if_busy(db, record)
        raise JournalError(f"journal {self.path}: {exc}") from exc


def _raise_if_busy(db: sqlite3.Connection, record: Record) -> None:
    """Raise ``Conflict`` naming the unfinished rotation of ``record``'s target, if any."""
    params = (record["account"], record["user"], record["kind"], record["slot"])
    row = db.execute(_UNFINISHED_FOR_TARGET, params).fetchone()
    if row is not None:
        raise Conflict(describe_target(record), str(row[0])) from None


def _stored(db: sqlite3.Connection, rotation_id: str) -> Record:
    row = db.execute(_SELECT, (rotation_id,)).fetchone()
    if row is None:
        raise NotFound(rotation_id)
    return _record(row)


def _target_fence(db: sqlite3.Connection, record: Record) -> int:
    params = (record["account"], record["user"], record["kind"], record["slot"] or "")
    row = db.execute(_TARGET_FENCE, params).fetchone()
    return int(row[0]) if row else 0


def _update(db: sqlite3.Connection, record: Record, *, expected: int) -> None:
    cursor = db.execute(_UPDATE, _row(record) | {"expected": expected})
    if cursor.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; never write blind
        raise LeaseLost(record["rotation_id"], "the record changed during the write")


def _row(record: Record) -> dict[str, Any]:
    """The parameters of a rotations row: the record and its derived ``finished``."""
    if record.keys() != _RECORD_KEYS:  # rotation_to_record changed: fail, never drop a field
        raise JournalError(f"record fields {sorted(record)} do not match the rotations table")
    return record | {"finished": int(is_finished(record))}


def _record(row: sqlite3.Row) -> Record:
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
