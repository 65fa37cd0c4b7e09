"""Discovery with and without the credential report: the plan is the same either way, the
report path lists per user only the users the plan touches, and stale report data (up to
four hours old) never leads rotator to act on a credential it has not listed fresh."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotator.aws import Clients
from rotator.inventory import SCREEN_AHEAD, collect, to_act_on, use_report
from rotator.kinds import KindContext, build_kinds
from rotator.kinds.access_key import AccessKeyRule
from rotator.kinds.login_profile import LoginProfileRule
from rotator.model import Action, Credential, Holder, Inventory, Kind, Status, utcnow
from rotator.planner import plan
from rotator.policy import FileSinkConfig, Rule
from rotator.settings import VerifySettings
from rotator.sinks import Sinks
from rotator.testing import MemoryAws, MemoryIam

PASSWORD = "Initial-Pass1!" + "x" * 8


def rules(tmp: Path) -> list[Rule]:
    sink = FileSinkConfig(type="file", path=f"{tmp}/{{user}}/{{kind}}.json")
    return [
        AccessKeyRule(
            name="keys", kind=Kind.ACCESS_KEY, sink=sink, disable_unused_after=timedelta(days=45)
        ),
        LoginProfileRule(
            name="console",
            kind=Kind.LOGIN_PROFILE,
            sink=sink,
            disable_unused_after=timedelta(days=45),
        ),
    ]


async def inventory(twin: MemoryIam, tmp: Path, *, report: bool) -> Inventory:
    aws = MemoryAws(twin)
    async with Clients(aws) as clients:
        ctx = KindContext(
            iam=twin,
            iam_once=twin,
            aws=aws,
            account=twin.account,
            verify=VerifySettings(),
            sink=Sinks(clients).for_rule,
        )
        kinds = build_kinds(ctx, {Kind.ACCESS_KEY, Kind.LOGIN_PROFILE})
        return await collect(
            iam=twin,
            account=twin.account,
            rules=rules(tmp),
            kinds=kinds,
            max_concurrency=4,
            now=utcnow(),
            report=report,
        )


async def seed(twin: MemoryIam, rng: random.Random, users: int) -> None:
    """A random account: 0-2 access keys (some inactive, old, unused), maybe a password."""
    now = utcnow()
    for n in range(users):
        name = f"user-{n:03d}"
        await twin.create_user(UserName=name)
        user = twin.users[name]
        for _ in range(rng.choice((0, 1, 1, 1, 2))):
            await twin.create_access_key(UserName=name)
            key = user.keys[-1]
            key.created = now - timedelta(days=rng.randint(0, 200), minutes=rng.randint(0, 1440))
            key.status = "Inactive" if rng.random() < 0.2 else "Active"
            if rng.random() < 0.7:
                key.last_used = now - timedelta(days=rng.randint(0, 100))
        if rng.random() < 0.5:
            await twin.create_login_profile(UserName=name, Password=PASSWORD)
            assert user.profile is not None
            user.profile.created = user.profile.changed = now - timedelta(days=rng.randint(0, 200))
            if rng.random() < 0.7:
                user.password_last_used = now - timedelta(days=rng.randint(0, 100))


def summary(inv: Inventory, tmp: Path) -> dict[tuple[str, Kind], tuple[Action, str | None]]:
    """(user, kind) -> (action, credential acted on: None unless rotate/disable/block)."""
    decided = plan(inv, rules(tmp), [], utcnow())
    return {
        (d.user, d.kind): (
            d.action,
            d.credential_id if d.action in (Action.ROTATE, Action.DISABLE, Action.BLOCK) else None,
        )
        for d in decided
    }


@pytest.mark.parametrize("seed_value", range(8))
async def test_the_report_path_plans_exactly_what_listing_per_user_plans(
    tmp_path: Path, seed_value: int
) -> None:
    twin = MemoryIam()
    await seed(twin, random.Random(seed_value), 40)
    by_report = summary(await inventory(twin, tmp_path, report=True), tmp_path)
    assert twin.calls["GetCredentialReport"] >= 1
    per_user = summary(await inventory(twin, tmp_path, report=False), tmp_path)
    assert by_report == per_user
    acted = [cid for _, cid in by_report.values() if cid is not None]
    assert acted, "the seed makes some credentials due"
    assert all(not cid.startswith("access_key_") for cid in acted), "acted on: real IDs only"


async def test_a_noop_sweep_costs_a_handful_of_calls_with_the_report(tmp_path: Path) -> None:
    twin = MemoryIam()
    for n in range(50):
        await twin.create_user(UserName=f"u{n}")
        key = (await twin.create_access_key(UserName=f"u{n}"))["AccessKey"]["AccessKeyId"]
        twin.use_access_key(key)
        await twin.create_login_profile(UserName=f"u{n}", Password=PASSWORD)
        twin.use_password(f"u{n}")
    twin.calls.clear()
    inv = await inventory(twin, tmp_path, report=True)
    assert {d.action for d in plan(inv, rules(tmp_path), [], utcnow())} == {Action.SKIP}
    assert dict(twin.calls) == {
        "ListUsers": 1,
        "GetCredentialReport": 2,  # none yet; then the new one
        "GenerateCredentialReport": 2,  # STARTED; COMPLETE
    }
    twin.calls.clear()
    await inventory(twin, tmp_path, report=False)
    assert twin.calls["ListAccessKeys"] == 50 and twin.calls["GetLoginProfile"] == 50
    assert twin.calls["GetAccessKeyLastUsed"] == 50, "a rule disables unused keys"


async def test_a_key_rotated_since_the_report_is_listed_fresh_not_acted_on_stale(
    tmp_path: Path,
) -> None:
    twin = MemoryIam()
    for n in range(6):
        await twin.create_user(UserName=f"u{n}")
        await twin.create_access_key(UserName=f"u{n}")
        twin.use_access_key(twin.users[f"u{n}"].keys[0].key_id)
    old = twin.users["u0"].keys[0]
    old.created -= timedelta(days=120)
    await inventory(twin, tmp_path, report=True)  # the report now says u0's key is due
    await twin.delete_access_key(UserName="u0", AccessKeyId=old.key_id)  # rotated by hand
    new = (await twin.create_access_key(UserName="u0"))["AccessKey"]["AccessKeyId"]
    await twin.create_user(UserName="late")  # not in the report (generated before)
    await twin.create_access_key(UserName="late")
    twin.calls.clear()
    inv = await inventory(twin, tmp_path, report=True)
    assert twin.calls["GenerateCredentialReport"] == 0, "the report is less than 4h old"
    decided = {
        d.user: d for d in plan(inv, rules(tmp_path), [], utcnow()) if d.kind is Kind.ACCESS_KEY
    }
    assert decided["u0"].action is Action.SKIP and decided["u0"].credential_id == new
    assert decided["late"].credential_id == twin.users["late"].keys[0].key_id
    assert twin.calls["ListAccessKeys"] == 2, "u0 (flagged by the stale report) and late only"


async def test_a_password_used_since_the_report_is_not_disabled(tmp_path: Path) -> None:
    twin = MemoryIam()
    for n in range(6):
        await twin.create_user(UserName=f"u{n}")
        await twin.create_login_profile(UserName=f"u{n}", Password=PASSWORD)
        twin.use_password(f"u{n}")
    twin.users["u0"].password_last_used = utcnow() - timedelta(days=60)
    await inventory(twin, tmp_path, report=True)  # the report says u0 has not signed in
    twin.use_password("u0")  # ... but u0 signs in now
    inv = await inventory(twin, tmp_path, report=True)
    actions = {d.user: d.action for d in plan(inv, rules(tmp_path), [], utcnow())}
    assert actions["u0"] is Action.SKIP, "ListUsers' PasswordLastUsed is fresh"


async def test_an_unavailable_report_falls_back_to_listing_per_user(tmp_path: Path) -> None:
    twin = MemoryIam()
    await seed(twin, random.Random(7), 12)
    twin.fail_next("GetCredentialReport", "Throttling")
    fallback = summary(await inventory(twin, tmp_path, report=True), tmp_path)
    assert twin.calls["ListAccessKeys"] == 12
    assert fallback == summary(await inventory(twin, tmp_path, report=False), tmp_path)


def test_the_report_is_used_when_it_costs_fewer_calls() -> None:
    rule = AccessKeyRule(
        name="k", kind=Kind.ACCESS_KEY, sink=FileSinkConfig(type="file", path="/s/{user}")
    )
    assert not use_report({"a": [rule], "b": [rule], "c": [rule]})
    assert use_report({u: [rule] for u in "abcd"})
    assert not use_report({u: [] for u in "abcdefgh"})


def test_screening_looks_ahead_so_the_plan_made_a_moment_later_agrees() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    rule = AccessKeyRule(
        name="k",
        kind=Kind.ACCESS_KEY,
        sink=FileSinkConfig(type="file", path="/s/{user}"),
        max_age=timedelta(days=90),
    )

    def holder(age: timedelta) -> Holder:
        key = Credential(
            kind=Kind.ACCESS_KEY,
            credential_id="access_key_1",
            status=Status.ACTIVE,
            created=now - age,
        )
        return Holder(account="1", name="u", arn="arn", credentials=(key,))

    assert to_act_on(holder(timedelta(days=10)), [rule], now) == set()
    assert to_act_on(holder(timedelta(days=91)), [rule], now) == {(Kind.ACCESS_KEY, "")}
    almost = timedelta(days=90) - SCREEN_AHEAD / 2
    assert to_act_on(holder(almost), [rule], now) == {(Kind.ACCESS_KEY, "")}
