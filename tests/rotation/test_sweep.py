"""What a sweep reports about each decision (``Result``), on the in-memory twins: errors keep
their class, another worker's lease is WAITING with its holder, and one decision's trouble
never stops the others."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator import audit
from rotator.journal import MemoryJournal
from rotator.model import Action, Step, utcnow
from rotator.rotation.engine import Engine
from rotator.rotation.report import Result
from rotator.settings import AwsSettings, Config, JournalSettings, RetrySettings, VerifySettings
from rotator.testing import MemoryAws, MemoryIam


def config(tmp: Path, **extra: Any) -> Config:
    return Config(
        rules=[  # type: ignore[list-item]
            {
                "name": "keys",
                "kind": "access-key",
                "max_age": "30d",
                "deactivate_after": "7d",
                "delete_after": "0s",
                "sink": {"type": "file", "path": f"{tmp}/secrets/{{user}}.json"},
                **extra,
            }
        ],
        retry=RetrySettings(attempts=2, initial_delay=timedelta(0)),
        verify=VerifySettings(attempts=2, initial_delay=timedelta(0)),
    )


@pytest.fixture(autouse=True)
def quiet(tmp_path: Path) -> None:
    audit.configure(stream="none", file=tmp_path / "audit.jsonl")


async def user_with_old_key(twin: MemoryIam, name: str, *, days: int = 100) -> str:
    await twin.create_user(UserName=name)
    key = (await twin.create_access_key(UserName=name))["AccessKey"]["AccessKeyId"]
    for k in twin.users[name].keys:
        k.created -= timedelta(days=days)
    return str(key)


async def test_a_permanent_error_is_failed_with_its_code_not_retried(tmp_path: Path) -> None:
    """AccessDenied on disabling an unused key: the decision fails (exit 1) with the code;
    a transient error on the same call is a retry."""
    twin = MemoryIam()
    await user_with_old_key(twin, "idle-a")
    await user_with_old_key(twin, "idle-b")
    twin.fail_next("UpdateAccessKey", "AccessDenied", status=403)
    cfg = config(tmp_path, disable_unused_after="90d", max_age="365d")
    engine = Engine(config=cfg, journal=MemoryJournal(), aws=MemoryAws(twin))
    result = await engine.sweep()
    by_result = {r.result: r for r in result.reports}
    assert set(by_result) == {Result.FAILED, Result.DISABLED}, "the other user still went on"
    failed = by_result[Result.FAILED]
    assert failed.error == "AccessDenied"
    assert "AccessDenied" in failed.reason
    assert not result.ok
    assert result.counts()["failed"] == 1 and result.counts()["retry"] == 0

    twin.fail_next("UpdateAccessKey", "Throttling")
    for user in ("idle-a", "idle-b"):
        for k in twin.users[user].keys:
            k.status = "Active"
    again = await engine.sweep()
    assert sorted(r.result for r in again.reports) == [Result.DISABLED, Result.RETRY]


async def test_a_rotation_another_worker_holds_is_waiting_with_its_holder(tmp_path: Path) -> None:
    twin = MemoryIam()
    old = await user_with_old_key(twin, "ci-app")
    twin.use_access_key(old, at=utcnow() + timedelta(minutes=5))  # still in use: held
    journal = MemoryJournal()
    cfg = config(tmp_path, deactivate_after="0s")
    first = await Engine(config=cfg, journal=journal, aws=MemoryAws(twin)).sweep()
    assert [r.result for r in first.reports] == [Result.HELD]
    (rotation,) = await journal.list_active()

    until = utcnow() + timedelta(hours=1)
    await journal.acquire(rotation.rotation_id, "daemon-7", timedelta(hours=1), utcnow())
    result = await Engine(config=cfg, journal=journal, aws=MemoryAws(twin)).sweep()
    (waiting,) = result.reports
    assert waiting.decision.action is Action.ADVANCE
    assert waiting.result is Result.WAITING
    assert f"daemon-7 holds rotation {rotation.rotation_id} until {until:%Y-%m-%dT%H}" in (
        waiting.reason
    )
    assert result.ok, "another live worker has it in hand"
    assert result.counts()["waiting"] == 1


def short_lease(tmp: Path) -> Config:
    """deactivate_after 0s and a 1s lease (timeouts cut to match its floor)."""
    cfg = config(tmp, deactivate_after="0s")
    return cfg.model_copy(
        update={
            "journal": JournalSettings(url="memory://", lease_ttl=timedelta(seconds=1)),
            "aws": AwsSettings(connect_timeout=0.1, read_timeout=0.1),
        }
    )


async def held_rotation(twin: MemoryIam, journal: MemoryJournal, cfg: Config) -> str:
    old = await user_with_old_key(twin, "ci-app")
    twin.use_access_key(old, at=utcnow() + timedelta(minutes=5))  # still in use: held
    first = await Engine(config=cfg, journal=journal, aws=MemoryAws(twin)).sweep()
    assert [r.result for r in first.reports] == [Result.HELD]
    (rotation,) = await journal.list_active()
    return rotation.rotation_id


async def test_a_silent_workers_lease_is_taken_over_after_a_full_lease_period(
    tmp_path: Path,
) -> None:
    """A worker on another host took the lease and went silent (its lease looks expired):
    the sweep watches it for a lease period on its own clock, then takes over."""
    twin, journal = MemoryIam(), MemoryJournal()
    cfg = short_lease(tmp_path)
    rid = await held_rotation(twin, journal, cfg)
    elsewhere = "other-host:4242:99:abc:def:w-1"
    await journal.acquire(rid, elsewhere, timedelta(seconds=1), utcnow() - timedelta(hours=1))
    result = await Engine(config=cfg, journal=journal, aws=MemoryAws(twin)).sweep()
    (report,) = result.reports
    assert report.result is Result.HELD, "taken over and driven: the old key is still in use"
    assert report.steps and report.steps[0].step is Step.DEACTIVATE
    events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    (taken,) = [e for e in events if e["event"] == "rotation.taken_over"]
    assert taken["holder"] == elsewhere and "full lease period" in taken["reason"]


async def test_a_live_worker_is_never_taken_over_even_when_its_clock_is_behind(
    tmp_path: Path,
) -> None:
    """The holder's clock is an hour behind, so its lease always looks expired here; it
    renews all the same, and the sweep sees that and leaves it alone."""
    twin, journal = MemoryIam(), MemoryJournal()
    cfg = short_lease(tmp_path)
    rid = await held_rotation(twin, journal, cfg)
    behind = timedelta(hours=1)
    holder = "other-host:4242:99:abc:def:w-2"
    held = await journal.acquire(rid, holder, timedelta(seconds=1), utcnow() - behind)

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(0.2)
            await journal.renew(held, timedelta(seconds=1), utcnow() - behind)

    beating = asyncio.create_task(heartbeat())
    try:
        result = await Engine(config=cfg, journal=journal, aws=MemoryAws(twin)).sweep()
    finally:
        beating.cancel()
    (report,) = result.reports
    assert report.result is Result.WAITING
    assert (await journal.get(rid)).lease.owner == holder  # type: ignore[union-attr]


async def test_a_dry_run_lists_the_steps_each_decision_would_take_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """would-rotate: the whole protocol, the old key's retirement after deactivate_after;
    would-advance: what is left of the rotation in flight, from its journalled state."""
    twin = MemoryIam()
    await user_with_old_key(twin, "ci-app")
    journal = MemoryJournal()
    cfg = config(tmp_path)
    started = await Engine(config=cfg, journal=journal, aws=MemoryAws(twin)).sweep()
    assert [r.result for r in started.reports] == [Result.ROTATED]
    old = await user_with_old_key(twin, "ci-new")
    later = utcnow() + timedelta(days=8)
    engine = Engine(config=cfg, journal=journal, aws=MemoryAws(twin), clock=lambda: later)
    keys = {u: [(k.key_id, k.status) for k in twin.users[u].keys] for u in twin.users}
    (rotation,) = await journal.list_active()

    dry = await engine.sweep(dry_run=True)
    by_user = {r.decision.user: r for r in dry.reports}
    advance, rotate = by_user["ci-app"], by_user["ci-new"]
    assert advance.result is Result.WOULD_ADVANCE
    assert [(s.step, s.credential_id) for s in advance.steps] == [
        (Step.DEACTIVATE, rotation.old_credential_id),
        (Step.DELETE, rotation.old_credential_id),
    ]
    assert rotate.result is Result.WOULD_ROTATE
    assert [s.step for s in rotate.steps] == [
        Step.CREATE,
        Step.VERIFY,
        Step.PROMOTE,
        Step.DEACTIVATE,
        Step.DELETE,
    ]
    assert rotate.steps[3].credential_id == old
    assert rotate.steps[3].rotation.updated_at == later + timedelta(days=7)
    assert f"pending in file {tmp_path}/secrets/ci-new.json" in rotate.steps[0].reason
    assert dry.counts()["would-rotate"] == 1 and dry.counts()["would-advance"] == 1
    assert {u: [(k.key_id, k.status) for k in twin.users[u].keys] for u in twin.users} == keys
    assert await journal.list_active() == [rotation]
    assert not (tmp_path / "secrets" / "ci-new.json").exists()
