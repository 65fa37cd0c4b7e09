"""The sweep's re-check before it journals a rotation (``rotation.rechecks``): the
inventory's listing stands in for a second one unless the journal shows a rotation of the
target since, or the listing is too old. Run on the in-memory IAM twin, which counts calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rotator.journal import MemoryJournal
from rotator.model import Outcome, Status, Step
from rotator.rotation import rechecks
from rotator.rotation.report import Result
from rotator.testing import MemoryIam
from tests.kinds.test_engine_memory import age, engine, rule


async def seed(twin: MemoryIam, *users: str) -> dict[str, str]:
    """Each user with one access key, 60 days old (due under a 30-day rule)."""
    ids = {}
    for user in users:
        await twin.create_user(UserName=user)
        ids[user] = (await twin.create_access_key(UserName=user))["AccessKey"]["AccessKeyId"]
        age(twin, user, 60)
    twin.calls.clear()  # count the sweep's calls only
    return ids


async def test_each_rotated_users_keys_are_listed_once(tmp_path: Path) -> None:
    twin, journal = MemoryIam(), MemoryJournal()
    old = await seed(twin, "alice", "bob", "carol")
    result = await engine(twin, [rule("access-key", tmp_path)], journal).sweep()
    assert [r.result for r in result.reports] == [Result.COMPLETED] * 3
    assert twin.calls["ListAccessKeys"] == 3, "the inventory's listing, once per user"
    assert twin.calls["CreateAccessKey"] == 3 and twin.calls["DeleteAccessKey"] == 3
    for user, key in old.items():
        (new,) = twin.users[user].keys
        assert new.key_id != key and new.status == "Active"


async def test_a_rotation_by_another_worker_after_the_inventory_is_seen(tmp_path: Path) -> None:
    """Worker A rotates alice's key all the way while B's inventory answer is on its way:
    B's re-check finds A's rotation in the journal, lists again, and starts nothing."""
    twin, journal = MemoryIam(), MemoryJournal()
    old = await seed(twin, "alice")
    rules = [rule("access-key", tmp_path)]
    listed = twin.list_access_keys
    a_results: list[Result] = []

    async def answered_after_a_rotated(**kwargs: Any) -> Any:
        answer = await listed(**kwargs)
        if not a_results:  # B's inventory: A runs before B sees the answer
            a_results.append(Result.STALE)  # (A's own listings pass straight through)
            a = await engine(twin, rules, journal).sweep()
            a_results[:] = [r.result for r in a.reports]
        return answer

    twin.list_access_keys = answered_after_a_rotated  # type: ignore[method-assign]
    b = await engine(twin, rules, journal).sweep()
    assert a_results == [Result.COMPLETED]
    (stale,) = b.reports
    assert stale.result is Result.STALE and "changed since planning" in stale.reason
    (key,) = twin.users["alice"].keys
    assert key.key_id != old["alice"] and key.status == "Active", "rotated once, by A"
    assert twin.calls["CreateAccessKey"] == 1
    assert twin.calls["ListAccessKeys"] == 3, "B's inventory, A's, and B's re-check"
    assert len(await journal.list_rotations()) == 1


async def test_a_listing_older_than_the_bound_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes made outside rotator are not in the journal: past ``SEEN_FRESH`` the
    re-check asks IAM, and sees a key a person deactivated since the inventory."""
    twin, journal = MemoryIam(), MemoryJournal()
    old = await seed(twin, "alice", "bob")
    monkeypatch.setattr(rechecks, "SEEN_FRESH", 0.0)
    listed = twin.list_access_keys
    seen: list[str] = []

    async def deactivated_by_a_person(**kwargs: Any) -> Any:
        answer = await listed(**kwargs)
        seen.append(kwargs["UserName"])
        if seen.count("bob") == 1 and kwargs["UserName"] == "bob":
            await twin.update_access_key(
                UserName="bob", AccessKeyId=old["bob"], Status=Status.INACTIVE.value
            )
        return answer

    twin.list_access_keys = deactivated_by_a_person  # type: ignore[method-assign]
    result = await engine(twin, [rule("access-key", tmp_path)], journal).sweep()
    by_user = {r.decision.user: r for r in result.reports}
    assert by_user["alice"].result is Result.COMPLETED
    assert by_user["bob"].result is Result.STALE, by_user["bob"]
    assert sorted(seen) == ["alice", "alice", "bob", "bob"], "each listed again"
    (key,) = twin.users["bob"].keys
    assert key.key_id == old["bob"] and key.status == "Inactive", "left as the person set it"


async def test_a_key_a_person_deleted_mid_rotation_is_found_by_the_deactivate_steps_calls(
    tmp_path: Path,
) -> None:
    """The deactivate step stands on the drive's view (no listing); IAM's answer to its
    last-used call (AccessDenied, as IAM answers for a key that no longer exists) makes it
    look again: the key is gone, the rotation completes, nothing is lost."""
    twin, journal = MemoryIam(), MemoryJournal()
    old = await seed(twin, "alice")
    created = twin.create_access_key

    async def then_a_person_deletes_the_old_key(**kwargs: Any) -> Any:
        answer = await created(**kwargs)
        await twin.delete_access_key(UserName="alice", AccessKeyId=old["alice"])
        return answer

    twin.create_access_key = then_a_person_deletes_the_old_key  # type: ignore[method-assign]
    result = await engine(twin, [rule("access-key", tmp_path)], journal).sweep()
    (done,) = result.reports
    assert done.result is Result.COMPLETED, done
    (key,) = twin.users["alice"].keys
    assert key.key_id != old["alice"] and key.status == "Active"
    stored = json.loads((tmp_path / "secrets" / "alice" / "access-key.json").read_text())
    assert stored["current"]["AccessKeyId"] == key.key_id
    assert twin.calls["ListAccessKeys"] == 2, "the inventory, then the look after AccessDenied"
    assert twin.calls["UpdateAccessKey"] == 0
    (rotation,) = await journal.list_rotations()
    steps = [(s.step, s.outcome) for s in await journal.steps(rotation.rotation_id)]
    assert (Step.DEACTIVATE, Outcome.ALREADY_DONE) in steps, steps
