"""One sweep over the accounts of an organization (moto: assumed-role credentials act in
the role's account): each account rotated on its own session, excluded ones untouched, an
account without the member role reported and the others completed."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from rotator import app
from rotator.accounts import AccountsSettings
from rotator.aws import Aws
from rotator.errors import InputError, Refused
from rotator.model import RotationState
from rotator.policy import Account
from rotator.rotation.org import OrgSweep, config_for
from rotator.settings import load_config_text
from tests.support.moto import MotoSandbox
from tests.support.org import ROLE, Org, assume_role_needs_the_role

POLICY = """
max_concurrency = 4
[journal]
url = "sqlite:///{tmp}/journal.db"
[verify]
attempts = 3
initial_delay = "1s"
[accounts]
role_name = "{role}"
max_accounts = 2
per_account_concurrency = 2
[accounts.organization]
[accounts.exclude]
ous = ["/Sandbox"]
[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "90d"
select = {{ path_prefix = "/ci/" }}
sink = {{ type = "file", path = "{tmp}/secrets/{{account_name}}-{{account}}/{{user}}.json" }}
"""


@pytest.fixture
def org(sandbox: MotoSandbox) -> Iterator[Org]:
    org = Org(sandbox).create()
    org.account("prod", "/Workloads/Prod/Inner")
    org.account("dev", "/Workloads")
    org.account("norole", "/Workloads", role=False)
    org.account("play", "/Sandbox")
    for name in ("prod", "dev", "norole", "play"):
        org.user(org.accounts[name], "ci-app")
        org.user(org.accounts[name], "ci-other")
    with assume_role_needs_the_role():
        yield org


def secret(tmp: Path, name: str, account: str, user: str) -> dict[str, str]:
    doc = json.loads((tmp / "secrets" / f"{name}-{account}" / f"{user}.json").read_text())
    return dict(doc["current"])


async def test_every_account_on_its_own_session(org: Org, tmp_path: Path) -> None:
    config = app.check(load_config_text(POLICY.format(tmp=tmp_path, role=ROLE), "t"), "t")
    before = {n: org.keys(org.accounts[n], "ci-app") for n in ("prod", "dev", "norole", "play")}
    async with app.open_engine(config) as engine:
        assert engine.org is not None
        result = await engine.org.run()
    by_name = {a.account.name: a for a in result.accounts}
    assert set(by_name) == {"prod", "dev", "norole"}  # /Sandbox excluded, the hub not included
    assert not result.ok
    assert by_name["norole"].error == "AccessDenied"
    assert by_name["norole"].outcome == "account-failed"
    for name in ("prod", "dev"):
        one = by_name[name]
        assert one.ok and one.sweep is not None, one.reason
        assert one.sweep.account == org.accounts[name]
        assert one.sweep.counts()["rotated"] == 2
        account = org.accounts[name]
        for user in ("ci-app", "ci-other"):
            current = secret(tmp_path, name, account, user)
            keys = org.keys(account, user)
            assert keys[current["AccessKeyId"]] == "Active" and len(keys) == 2
            arn = org.sandbox.caller_arn(current["AccessKeyId"], current["SecretAccessKey"])
            assert arn == f"arn:aws:iam::{account}:user/ci/{user}"
    for name in ("norole", "play"):  # untouched
        assert org.keys(org.accounts[name], "ci-app") == before[name]
    counts = result.counts()
    assert (counts["accounts"], counts["accounts_failed"], counts["rotated"]) == (3, 1, 4)
    assert result.as_dict()["accounts"][0]["name"]
    async with app.open_journal_for(config) as journal:
        rotations = await journal.list_rotations(limit=100)
    assert {r.account for r in rotations} == {org.accounts["prod"], org.accounts["dev"]}


async def test_filters_and_rules_limited_to_accounts(org: Org, tmp_path: Path) -> None:
    text = POLICY.format(tmp=tmp_path, role=ROLE) + 'ous = ["/Workloads/Prod"]\n'
    config = app.check(load_config_text(text, "t"), "t")
    async with app.open_engine(config) as engine:
        assert engine.org is not None
        planned = await engine.org.plan(only=[org.accounts["prod"], org.accounts["dev"]])
        assert {p.account.name for p in planned} == {"prod", "dev"}
        actions = {}
        for one in planned:
            assert one.plan is not None, one.reason
            actions[one.account.name] = [str(d.action) for d in one.plan]
        assert actions["prod"] == ["rotate", "rotate"]
        assert "rotate" not in actions["dev"]  # the rule is limited to /Workloads/Prod
        result = await engine.org.run(ous=["/Workloads/Prod"])
    assert [a.account.name for a in result.accounts] == ["prod"]
    assert result.ok and result.counts()["rotated"] == 2
    assert len(org.keys(org.accounts["dev"], "ci-app")) == 1


async def test_credentials_are_assumed_again_before_they_expire(org: Org) -> None:
    hub = Aws()
    role = f"arn:aws:iam::{org.accounts['dev']}:role/{ROLE}"
    member = await hub.assume_role(role, duration=timedelta(minutes=15))
    async with member.client("sts") as sts:
        assert (await sts.get_caller_identity())["Account"] == org.accounts["dev"]
    credentials = member._session._session._credentials  # type: ignore[attr-defined]
    first = (await credentials.get_frozen_credentials()).access_key
    assert credentials.refresh_needed()  # 15 min left: within botocore's advisory window
    async with member.client("sts") as sts:
        assert (await sts.get_caller_identity())["Account"] == org.accounts["dev"]
    assert (await credentials.get_frozen_credentials()).access_key != first


def test_rules_of_other_accounts_are_disabled_for_an_account(tmp_path: Path) -> None:
    text = (
        POLICY.replace("[accounts.organization]\n", "members = ['111111111111', '222222222222']\n")
        .replace('[accounts.exclude]\nous = ["/Sandbox"]\n', "")
        .format(tmp=tmp_path, role=ROLE)
        + "accounts = ['111111111111']\n"
    )
    config = load_config_text(text, "t")
    assert isinstance(config.accounts, AccountsSettings)
    mine = config_for(config, Account(id="111111111111"))
    other = config_for(config, Account(id="222222222222"))
    assert mine.rules[0].enabled and not other.rules[0].enabled
    assert mine.max_concurrency == 2
    with pytest.raises(ValueError, match=r"needs an \[accounts\] section"):
        OrgSweep(config=config.model_copy(update={"accounts": None}), journal=None, aws=Aws())  # type: ignore[arg-type]


async def test_a_hub_sink_keeps_every_accounts_secrets_in_the_hub(org: Org, tmp_path: Path) -> None:
    text = POLICY.format(tmp=tmp_path, role=ROLE).replace(
        'sink = { type = "file", path = "'
        + f"{tmp_path}"
        + '/secrets/{account_name}-{account}/{user}.json" }',
        'sink_in = "hub"\nsink = { type = "secretsmanager", name = "rotator/{account}/{user}" }',
    )
    assert 'sink_in = "hub"' in text
    config = app.check(load_config_text(text, "t"), "t")
    async with app.open_engine(config) as engine:
        assert engine.org is not None
        result = await engine.org.run(only=[org.accounts["prod"]])
    assert result.ok and result.counts()["rotated"] == 2
    account = org.accounts["prod"]
    hub = org.sandbox.client("secretsmanager")
    got = hub.get_secret_value(SecretId=f"rotator/{account}/ci-app", VersionStage="AWSCURRENT")
    secret = json.loads(got["SecretString"])
    assert secret, hub.list_secret_version_ids(SecretId=f"rotator/{account}/ci-app")
    arn = org.sandbox.caller_arn(secret["AccessKeyId"], secret["SecretAccessKey"])
    assert arn == f"arn:aws:iam::{account}:user/ci/ci-app"
    member = org.in_account(account, "secretsmanager")
    assert member.list_secrets()["SecretList"] == []  # nothing kept in the member account


async def test_iam_requests_per_account_stay_under_the_rate(org: Org) -> None:
    """``per_account_rate``: each account's IAM requests are spaced (the account's own
    ``Pacer``, a before-send hook on every IAM client of the account's session); other
    accounts are not slowed."""
    hub = Aws()
    dev = await hub.assume_role(f"arn:aws:iam::{org.accounts['dev']}:role/{ROLE}", iam_rate=10)
    prod = await hub.assume_role(f"arn:aws:iam::{org.accounts['prod']}:role/{ROLE}", iam_rate=10)
    sent: dict[str, list[float]] = {"dev": [], "prod": []}

    async def calls(name: str, aws: Aws) -> None:
        def record(**_: object) -> None:  # after the limit's hook: when a request leaves
            sent[name].append(time.monotonic())

        async with aws.client("iam") as one, aws.client("iam") as two:  # one limit per account
            for client in (one, two):
                client.meta.events.register("before-send.iam", record)
            await asyncio.gather(*(client.list_users() for client in [one, two] * 5))

    started = time.monotonic()
    await asyncio.gather(calls("dev", dev), calls("prod", prod))
    for stamps in sent.values():
        assert len(stamps) == 10
        # 10 requests at 10/s: the last leaves at least 0.9 s after the first was allowed.
        assert stamps[-1] - started >= 0.9
        assert all(b - a >= 0.09 for a, b in itertools.pairwise(stamps)), stamps
    # The accounts in parallel, each on its own pace, measured by the pacers themselves
    # (not by wall time, which a busy machine stretches): each account's pacer held its
    # callers no longer than its own 10 requests need (9 gaps of 1/10 s; a pace shared
    # with the other account would have held them about twice as long), and each
    # account's requests went while the other's were still going.
    for aws in (dev, prod):
        assert aws.iam_pacer.waited_s <= 0.9 + 0.05, aws.iam_pacer.waited_s
    assert sent["dev"][0] < sent["prod"][-1] and sent["prod"][0] < sent["dev"][-1]
    # The hub's own account: its own pace, or with a rate a strict one of its own.
    assert hub.limited(None) is hub
    assert hub.limited(5).iam_pacer.ceiling == 5 and hub.limited(5).iam_pacer is not hub.iam_pacer
    # Without a rate an account's pace falls back to the hub's ceiling
    # ([aws] max_iam_calls_per_second), on a pacer of its own: IAM throttles per account.
    capped = Aws(max_iam_calls_per_second=7)
    staging = await capped.assume_role(f"arn:aws:iam::{org.accounts['dev']}:role/{ROLE}")
    assert staging.iam_pacer.ceiling == 7 and staging.iam_pacer is not capped.iam_pacer
    assert dev.iam_pacer is not prod.iam_pacer


async def test_accounts_handed_in_must_be_ones_the_policy_names(tmp_path: Path) -> None:
    text = (
        POLICY.replace("[accounts.organization]\n", "members = ['111111111111']\n")
        .replace(
            '[accounts.exclude]\nous = ["/Sandbox"]\n',
            "[accounts.exclude]\nids = ['222222222222']\n",
        )
        .format(tmp=tmp_path, role=ROLE)
    )
    config = load_config_text(text, "t")
    org = OrgSweep(config=config, journal=None, aws=Aws())  # type: ignore[arg-type]
    for account, problem in (
        (Account(id="222222222222"), "excluded"),
        (Account(id="333333333333"), "not among"),
        (Account(id="111111111111", hub=True), "include_self"),
    ):
        with pytest.raises(InputError, match=problem):
            await org.run(accounts=[account])


async def test_a_rollback_happens_in_the_rotations_own_account(org: Org, tmp_path: Path) -> None:
    config = app.check(load_config_text(POLICY.format(tmp=tmp_path, role=ROLE), "t"), "t")
    account = org.accounts["dev"]
    (old,) = org.keys(account, "ci-app")
    async with app.open_engine(config) as engine:
        assert engine.org is not None
        result = await engine.org.run(only=[account])
        (report,) = [r for r in result.accounts[0].sweep.reports if r.decision.user == "ci-app"]  # type: ignore[union-attr]
        rotation_id = report.rotation_id
        assert rotation_id is not None
        with pytest.raises(Refused, match=f"is in account {account}"):
            await engine._requests.rollback(rotation_id)  # the hub's own session: refused
        iam = org.in_account(account, "iam")
        iam.update_access_key(UserName="ci-app", AccessKeyId=old, Status="Inactive")
        done = await engine.rollback(rotation_id)
    assert done.rotation.state == RotationState.ROLLED_BACK
    assert org.keys(account, "ci-app")[old] == "Active"  # reactivated in the member account
