"""What only a shared SQLite file can get wrong: persistence, permissions, the schema
version, and compare-and-set between connections and between OS processes. The behaviour
every journal shares is proved in ``test_contract.py``."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import sys
from contextlib import closing
from pathlib import Path

import pytest

from rotator.errors import Conflict, JournalError, LeaseLost
from rotator.journal import SqliteJournal
from rotator.journal.sqlite import SCHEMA_VERSION
from rotator.model import Lease, Outcome, Rotation, Step, StepRecord
from tests.journal.test_contract import NOW, TTL, rotation

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "rotator" / "journal.db"


async def test_sqlite_data_persists_across_close_and_reopen(db_path: Path) -> None:
    async with SqliteJournal(db_path) as journal:
        added = await journal.add(rotation())
        held = await journal.acquire(added.rotation_id, "w1", TTL, NOW)
        step = StepRecord(
            rotation_id=added.rotation_id, at=NOW, step=Step.CREATE, outcome=Outcome.DONE
        )
        await journal.record_step(step)
    async with SqliteJournal(db_path) as journal:
        assert await journal.get(added.rotation_id) == held
        assert await journal.list_active() == [held]
        assert await journal.steps(added.rotation_id) == [step]
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_file_is_0600_in_new_0700_directories(db_path: Path) -> None:
    async with SqliteJournal(db_path) as journal:
        await journal.add(rotation())
        files = [db_path, *db_path.parent.glob("journal.db-*")]  # with -wal and -shm
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
            f.name: 0o600 for f in files
        }
    for directory in (db_path.parent, db_path.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


async def test_sqlite_refuses_a_journal_with_a_newer_schema(db_path: Path) -> None:
    async with SqliteJournal(db_path):
        pass
    with closing(sqlite3.connect(db_path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(JournalError, match="schema version"):
        async with SqliteJournal(db_path):
            pass


async def test_sqlite_database_itself_keeps_one_unfinished_rotation_per_target(
    db_path: Path,
) -> None:
    async with SqliteJournal(db_path) as journal:
        await journal.add(rotation())
    with closing(sqlite3.connect(db_path)) as db:
        db.execute("CREATE TEMP TABLE copy AS SELECT * FROM rotations")
        db.execute("UPDATE copy SET rotation_id = 'rot-copy'")
        with pytest.raises(
            sqlite3.IntegrityError, match=r"UNIQUE constraint failed: rotations\.account"
        ):
            db.execute("INSERT INTO rotations SELECT * FROM copy")


async def test_sqlite_two_connections_racing_add_for_one_target_one_wins(db_path: Path) -> None:
    async with SqliteJournal(db_path) as one, SqliteJournal(db_path) as two:
        for user in ("u0", "u1", "u2", "u3", "u4"):
            results = await asyncio.gather(
                one.add(rotation(user)), two.add(rotation(user)), return_exceptions=True
            )
            wins = [r for r in results if isinstance(r, Rotation)]
            conflicts = [r for r in results if isinstance(r, Conflict)]
            assert len(wins) == 1, results
            assert len(conflicts) == 1, results
            assert conflicts[0].existing == wins[0].rotation_id


async def test_sqlite_two_connections_racing_acquire_one_wins(db_path: Path) -> None:
    async with SqliteJournal(db_path) as one, SqliteJournal(db_path) as two:
        added = await one.add(rotation())
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
        assert await one.get(added.rotation_id) == wins[0]


_RACER = """
import asyncio, sys
from datetime import datetime, timedelta
from pathlib import Path
from rotator.errors import LeaseLost
from rotator.journal.sqlite import SqliteJournal

async def main(path, rotation_id, owner, now):
    async with SqliteJournal(Path(path)) as journal:
        print("ready", flush=True)
        sys.stdin.readline()
        try:
            await journal.acquire(rotation_id, owner, timedelta(minutes=5),
                                  datetime.fromisoformat(now))
        except LeaseLost:
            print("lost", flush=True)
        else:
            print("won", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_sqlite_two_processes_racing_acquire_one_wins(db_path: Path) -> None:
    async with SqliteJournal(db_path) as journal:
        added = await journal.add(rotation())
    racers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _RACER,
            str(db_path),
            added.rotation_id,
            owner,
            NOW.isoformat(),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for owner in ("w1", "w2")
    ]
    try:
        for racer in racers:  # both are open and waiting before either is let go
            assert racer.stdout is not None
            assert await asyncio.wait_for(racer.stdout.readline(), 30) == b"ready\n"
        outputs = await asyncio.wait_for(
            asyncio.gather(*(racer.communicate(b"go\n") for racer in racers)), 60
        )
    finally:
        for racer in racers:
            if racer.returncode is None:
                racer.kill()
                await racer.wait()
    assert [racer.returncode for racer in racers] == [0, 0]
    said = [out.decode().strip() for out, _ in outputs]
    assert sorted(said) == ["lost", "won"]
    async with SqliteJournal(db_path) as journal:
        stored = await journal.get(added.rotation_id)
    winner = ("w1", "w2")[said.index("won")]
    assert stored.lease == Lease(owner=winner, expires_at=NOW + TTL, fence=1)


async def test_sqlite_concurrent_writes_share_commits_and_a_failed_one_undoes_only_itself(
    db_path: Path,
) -> None:
    """Forty writers at once: they are committed in a few groups (one fsync each) instead
    of forty; the one that conflicts is refused and undone alone; every write a caller saw
    succeed is in the file, read from another connection."""
    commits: list[str] = []
    async with SqliteJournal(db_path) as journal:
        assert journal._db is not None
        journal._db.set_trace_callback(
            lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None
        )
        users = [f"user-{n:02d}" for n in range(40)]
        outcomes = await asyncio.gather(
            *(journal.add(rotation(user)) for user in [*users, "user-07"]),
            return_exceptions=True,
        )
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        added = [o for o in outcomes if isinstance(o, Rotation)]
        assert len(refused) == 1 and isinstance(refused[0], Conflict)
        assert len(added) == 40
        assert len(commits) < 20, f"{len(commits)} commits for 41 writes"
    with closing(sqlite3.connect(db_path)) as db:
        stored = {row[0] for row in db.execute("SELECT user FROM rotations")}
    assert stored == set(users)


async def test_sqlite_a_cancelled_writer_leaves_the_journal_whole_and_usable(
    db_path: Path,
) -> None:
    """A sweep cancelled mid-write (SIGTERM): the write it gave the journal is either all
    there or not at all, later writes go on, and closing waits for what was queued."""
    async with SqliteJournal(db_path) as journal:
        writes = [asyncio.create_task(journal.add(rotation(f"u{n}"))) for n in range(10)]
        await asyncio.sleep(0)
        for task in writes[::2]:
            task.cancel()
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert all(isinstance(o, Rotation) for o in outcomes[1::2])
        later = await journal.add(rotation("after"))
        assert await journal.get(later.rotation_id) == later
    with closing(sqlite3.connect(db_path)) as db:
        stored = {row[0] for row in db.execute("SELECT user FROM rotations")}
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert {f"u{n}" for n in range(1, 10, 2)} | {"after"} <= stored


async def test_journals_opened_at_once_on_a_new_file_all_open(tmp_path: Path) -> None:
    """Two sweeps started together on a new journal: turning the file to WAL takes a lock
    SQLite does not wait for, so one of them failed with "database is locked" (about one
    round in ten here). Each waits its turn now, up to the busy timeout."""
    for round_ in range(100):
        path = tmp_path / f"round-{round_}" / "journal.db"
        journals = [SqliteJournal(path) for _ in range(3)]
        opened = await asyncio.gather(*(j.__aenter__() for j in journals), return_exceptions=True)
        try:
            failed = [o for o in opened if isinstance(o, BaseException)]
            assert not failed, f"round {round_}: {failed}"
            assert all([await j.list_active() == [] for j in journals])
        finally:
            for journal in journals:
                await journal.__aexit__(None, None, None)
