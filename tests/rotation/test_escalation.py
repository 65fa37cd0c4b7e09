"""An emergency reported for a credential whose rotation is already under way: the
rotation is escalated — its old (leaked) credential is deactivated at once, whoever still
uses it — instead of the operator being told to wait out ``deactivate_after``.

The real engine against the in-memory IAM twin, with the real in-memory journal and a
file sink.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator import audit
from rotator.errors import InputError, LeaseLost, Refused
from rotator.journal import MemoryJournal
from rotator.model import Kind, Outcome, Rotation, RotationState, Step, utcnow
from rotator.rotation.emergency import Request, escalate
from rotator.rotation.engine import Engine
from rotator.rotation.protocol import EMERGENCY_DEACTIVATE, next_step
from rotator.rotation.report import Result
from rotator.settings import AwsSettings, Config, JournalSettings, RetrySettings, VerifySettings
from rotator.testing import MemoryAws, MemoryIam

USER = "ci-app"


@pytest.fixture
def twin() -> MemoryIam:
    return MemoryIam()


@pytest.fixture
def journal() -> MemoryJournal:
    return MemoryJournal()


@pytest.fixture(autouse=True)
def audit_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    audit.configure(stream="none", file=path)
    return path


def engine(twin: MemoryIam, journal: MemoryJournal, tmp: Path, lease_ttl: str = "5m") -> Engine:
    config = Config(
        rules=[  # type: ignore[list-item]
            {
                "name": "keys",
                "kind": "access-key",
                "max_age": "30d",
                "deactivate_after": "7d",
                "delete_after": "7d",
                "sink": {"type": "file", "path": f"{tmp}/secrets/{{user}}.json"},
            }
        ],
        journal=JournalSettings(url="memory://", lease_ttl=lease_ttl),  # type: ignore[arg-type]
        aws=AwsSettings(connect_timeout=0.2, read_timeout=0.2),
        retry=RetrySettings(attempts=2, initial_delay=timedelta(0)),
        verify=VerifySettings(attempts=2, initial_delay=timedelta(0)),
    )
    return Engine(config=config, journal=journal, aws=MemoryAws(twin))


def statuses(twin: MemoryIam) -> dict[str, str]:
    return {k.key_id: k.status for k in twin.users[USER].keys}


def read(path: Path) -> str:
    return path.read_text()


def current(tmp: Path) -> str:
    doc = json.loads((tmp / "secrets" / f"{USER}.json").read_text())
    return str(doc["current"]["AccessKeyId"])


@pytest.fixture
async def promoted(twin: MemoryIam, journal: MemoryJournal, tmp_path: Path) -> tuple[str, str]:
    """A sweep rotated the user's 40-day-old key: the new key is promoted, the old one
    waits out its 7 days before it is deactivated. Returns (old, new)."""
    await twin.create_user(UserName=USER, Path="/ci/")
    old = (await twin.create_access_key(UserName=USER))["AccessKey"]["AccessKeyId"]
    twin.users[USER].keys[0].created -= timedelta(days=40)
    await engine(twin, journal, tmp_path).sweep()
    (rotation,) = await journal.list_active()
    assert rotation.state is RotationState.PROMOTED
    assert rotation.old_credential_id == old and rotation.new_credential_id is not None
    return old, rotation.new_credential_id


def leak(key_id: str, hold: timedelta = timedelta(0)) -> Request:
    """What ``rotator rotate --user ci-app --credential-id KEY --emergency`` asks."""
    return Request(user=USER, credential_id=key_id, emergency=True, hold=hold)


async def test_a_leaked_key_awaiting_deactivation_is_deactivated_and_deleted_at_once(
    twin: MemoryIam,
    journal: MemoryJournal,
    tmp_path: Path,
    promoted: tuple[str, str],
    audit_file: Path,
) -> None:
    old, new = promoted
    twin.use_access_key(old, utcnow())  # whoever holds the leaked key is using it
    report = await engine(twin, journal, tmp_path).rotate_now(leak(old))

    assert [f"{s.step}:{s.outcome}" for s in report.steps] == ["deactivate:done", "delete:done"]
    assert statuses(twin) == {new: "Active"}, "the leaked key is gone, the new one stays"
    assert current(tmp_path) == new
    (rotation,) = await journal.list_rotations(user=USER)  # the same rotation, not a second
    assert rotation.rotation_id == report.rotation_id
    assert rotation.state is RotationState.COMPLETED
    assert rotation.emergency is True
    assert "reported leaked" in rotation.reason
    events = [json.loads(line) for line in read(audit_file).splitlines()]
    (escalated,) = [e for e in events if e["event"] == "rotation.escalated"]
    assert escalated["level"] == "warning"
    assert (escalated["rotation_id"], escalated["user"], escalated["credential_id"]) == (
        rotation.rotation_id,
        USER,
        old,
    )
    assert (escalated["state"], escalated["hold"]) == ("promoted", "0:00:00")
    assert "reported leaked" in escalated["reason"]


async def test_a_hold_keeps_the_leaked_key_inactive_until_the_hold_ends(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, promoted: tuple[str, str]
) -> None:
    old, new = promoted
    report = await engine(twin, journal, tmp_path).rotate_now(leak(old, timedelta(days=1)))

    assert [f"{s.step}:{s.outcome}" for s in report.steps] == ["deactivate:done"]
    assert statuses(twin) == {old: "Inactive", new: "Active"}
    (rotation,) = await journal.list_active()
    assert rotation.state is RotationState.DEACTIVATED
    due = next_step(rotation)
    assert due is not None and due.step is Step.DELETE
    assert rotation.deactivated_at is not None
    assert due.at == rotation.deactivated_at + timedelta(days=1)


async def test_a_leak_of_the_new_key_is_refused_with_the_way_out(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, promoted: tuple[str, str]
) -> None:
    old, new = promoted
    with pytest.raises(Refused, match=rf"{new} is the new access key of rotation .*rollback"):
        await engine(twin, journal, tmp_path).rotate_now(leak(new))
    assert statuses(twin) == {old: "Active", new: "Active"}, "nothing changed"


async def test_an_emergency_under_way_must_name_the_leaked_credential(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, promoted: tuple[str, str]
) -> None:
    old, new = promoted
    request = Request(user=USER, emergency=True)
    with pytest.raises(InputError, match="under way: name the leaked one with --credential-id"):
        await engine(twin, journal, tmp_path).rotate_now(request)
    assert statuses(twin) == {old: "Active", new: "Active"}


async def test_a_dry_run_escalation_changes_nothing(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, promoted: tuple[str, str]
) -> None:
    old, new = promoted
    report = await engine(twin, journal, tmp_path).rotate_now(leak(old), dry_run=True)
    assert report.result is Result.WOULD_ADVANCE
    assert report.decision.rotation_id is not None
    assert f"{old} reported leaked by an operator while promoted" in report.reason
    assert statuses(twin) == {old: "Active", new: "Active"}
    (rotation,) = await journal.list_active()
    assert rotation.state is RotationState.PROMOTED and rotation.emergency is False


async def hold_lease(journal: MemoryJournal, owner: str, ttl: timedelta) -> Rotation:
    (rotation,) = await journal.list_active()
    return await journal.acquire(rotation.rotation_id, owner, ttl, utcnow())


async def test_the_escalation_waits_for_a_daemon_to_let_go_of_the_rotation(
    twin: MemoryIam,
    journal: MemoryJournal,
    tmp_path: Path,
    promoted: tuple[str, str],
    audit_file: Path,
) -> None:
    old, new = promoted
    held = await hold_lease(journal, "daemon", timedelta(hours=1))

    async def daemon_finishes_its_step() -> None:
        await asyncio.sleep(0.5)
        await journal.release(held)

    letting_go = asyncio.create_task(daemon_finishes_its_step())
    report = await engine(twin, journal, tmp_path).rotate_now(leak(old))
    await letting_go
    assert report.steps and report.steps[0].outcome is Outcome.DONE
    assert statuses(twin) == {new: "Active"}
    notices = [json.loads(line) for line in read(audit_file).splitlines()]
    waited = [n for n in notices if "waiting up to 0:05:00" in str(n.get("reason"))]
    assert len(waited) == 1 and "held by daemon" in waited[0]["reason"]


async def test_an_escalation_takes_over_a_silent_lease_after_a_full_lease_period(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, promoted: tuple[str, str]
) -> None:
    """A holder that shows no sign of life for a lease period on the operator's own clock
    (whatever its lease's wall-clock expiry says) is taken over: the leak is handled."""
    old, new = promoted
    await hold_lease(journal, "daemon", timedelta(hours=1))
    report = await engine(twin, journal, tmp_path, lease_ttl="1s").rotate_now(leak(old))
    assert report.steps and report.steps[0].outcome is Outcome.DONE
    assert statuses(twin) == {new: "Active"}


async def test_an_escalation_gives_up_on_a_lease_held_past_its_patience(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, promoted: tuple[str, str]
) -> None:
    """A live daemon (it renews its lease) holds the rotation longer than the operator's
    patience (the lease period): the escalation gives up and changes nothing."""
    old, new = promoted
    held = await hold_lease(journal, "daemon", timedelta(seconds=1))

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(0.2)
            await journal.renew(held, timedelta(seconds=1), utcnow())

    beating = asyncio.create_task(heartbeat())
    try:
        with pytest.raises(LeaseLost):
            await engine(twin, journal, tmp_path, lease_ttl="1s").rotate_now(leak(old))
    finally:
        beating.cancel()
    assert statuses(twin) == {old: "Active", new: "Active"}
    (rotation,) = await journal.list_active()
    assert rotation.emergency is False, "not escalated without the lease"


def under_way(started: datetime, state: RotationState, **changes: Any) -> Rotation:
    """A sweep's rotation of AKIAOLD (7 days to deactivation, 7 more to deletion)."""
    return Rotation.start(
        account="123456789012",
        user=USER,
        kind=Kind.ACCESS_KEY,
        rule="keys",
        now=started,
        old_credential_id="AKIAOLD",
        deactivate_after=timedelta(days=7),
        delete_after=timedelta(days=7),
    ).evolve(state=state, **changes)


@pytest.mark.parametrize(
    ("state", "new_id"),
    [
        (RotationState.PLANNED, None),
        (RotationState.CREATING, None),
        (RotationState.CREATED, "AKIANEW"),
        (RotationState.VERIFIED, "AKIANEW"),
        (RotationState.PROMOTED, "AKIANEW"),
    ],
)
def test_whatever_step_it_had_reached_an_escalated_rotation_deactivates_next(
    state: RotationState, new_id: str | None
) -> None:
    now = utcnow()
    promoted_at = now - timedelta(minutes=30) if state is RotationState.PROMOTED else None
    rotation = under_way(
        now - timedelta(hours=1), state, new_credential_id=new_id, promoted_at=promoted_at
    )
    escalated = escalate(rotation, leak("AKIAOLD"), now)
    assert escalated.emergency and escalated.state is state
    due = next_step(escalated)
    assert due is not None
    assert (due.transition, due.at) == (EMERGENCY_DEACTIVATE, rotation.created_at)
    assert due.step is Step.DEACTIVATE


def test_an_escalated_rotation_already_deactivated_is_deleted_after_the_hold() -> None:
    now = utcnow()
    rotation = under_way(
        now - timedelta(days=8),
        RotationState.DEACTIVATED,
        new_credential_id="AKIANEW",
        promoted_at=now - timedelta(days=8),
        deactivated_at=now - timedelta(days=1),
    )
    escalated = escalate(rotation, leak("AKIAOLD"), now)
    due = next_step(escalated)
    assert due is not None
    assert (due.step, due.at) == (Step.DELETE, now - timedelta(days=1))


def test_a_leak_of_another_credential_than_the_one_being_retired_is_refused() -> None:
    rotation = under_way(utcnow(), RotationState.PROMOTED, new_credential_id="AKIANEW")
    with pytest.raises(Refused, match="access key AKIAOLD is under way; finish or roll it back"):
        escalate(rotation, leak("AKIAOTHER"), utcnow())


async def test_when_both_keys_leaked_the_way_out_never_brings_the_first_one_back(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, promoted: tuple[str, str]
) -> None:
    """The old key leaked and is held inactive for a day; then the new one leaks too. The
    advice is to finish the emergency (not to roll back, which would reactivate the old
    key), and following it works."""
    old, new = promoted
    run = engine(twin, journal, tmp_path)
    await run.rotate_now(leak(old, timedelta(days=1)))
    with pytest.raises(
        Refused, match=rf"finish it first \(rotate {old} with --emergency --hold 0s"
    ):
        await run.rotate_now(leak(new))
    assert statuses(twin) == {old: "Inactive", new: "Active"}

    finished = await run.rotate_now(leak(old))
    assert finished.state is RotationState.COMPLETED
    report = await run.rotate_now(leak(new))
    assert report.state is RotationState.COMPLETED
    (newest,) = statuses(twin)
    assert statuses(twin) == {newest: "Active"} and newest not in (old, new)
    assert current(tmp_path) == newest
