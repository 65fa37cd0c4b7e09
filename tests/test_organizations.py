"""Discovery against moto's Organizations: nested OUs, paging, exclusions, ACTIVE only."""

from __future__ import annotations

from typing import Any

import pytest

from rotator.accounts import AccountsSettings
from rotator.aws import Aws
from rotator.errors import InputError
from rotator.organizations import Accounts, discover, resolve
from tests.support.moto import MotoSandbox
from tests.support.org import Org


@pytest.fixture
def org(sandbox: MotoSandbox) -> Org:
    org = Org(sandbox).create()
    org.account("top", role=False)
    org.account("web", "/Workloads", role=False, tags={"env": "prod"})
    org.account("db", "/Workloads/Prod", role=False)
    org.account("deep", "/Workloads/Prod/Inner/Deepest", role=False)
    org.account("legacy", "/Workloads/Prod/Legacy", role=False)
    org.account("play", "/Sandbox", role=False)
    closed = org.account("closed", "/Workloads/Prod", role=False)
    org.org.close_account(AccountId=closed)
    return org


def settings(**org: Any) -> AccountsSettings:
    exclude = org.pop("exclude", {})
    return AccountsSettings.model_validate(
        {"role_name": "r", "organization": org, "exclude": exclude}
    )


async def found(config: AccountsSettings, *, tags: bool = False) -> Accounts:
    async with Aws().client("organizations") as client:
        return await discover(client, config, tags=tags)


def names(accounts: Accounts, org: Org) -> set[str]:
    by_id = {v: k for k, v in org.accounts.items()}
    return {by_id.get(a.id, a.id) for a in accounts.selected}


async def test_whole_org_recursively_active_only(org: Org) -> None:
    result = await found(settings())
    assert names(result, org) == {"top", "web", "db", "deep", "legacy", "play"} | {
        org.sandbox.account()
    }
    deep = next(a for a in result.selected if a.id == org.accounts["deep"])
    assert deep.ou_path == "/Workloads/Prod/Inner/Deepest"
    assert deep.ou_ids[0] == org.root and len(deep.ou_ids) == 5
    assert deep.name == "deep"
    (closed,) = result.skipped
    assert closed.account.id == org.accounts["closed"] and "SUSPENDED" in closed.reason


async def test_ous_by_id_and_path_nested(org: Org) -> None:
    by_path = await found(settings(ous=["/Workloads/Prod"]))
    assert names(by_path, org) == {"db", "deep", "legacy"}
    by_id = await found(settings(ous=[org.ous["/Workloads/Prod"], org.ous["/Sandbox"]]))
    assert names(by_id, org) == {"db", "deep", "legacy", "play"}
    flat = await found(settings(ous=["/Workloads/Prod"], recursive=False))
    assert names(flat, org) == {"db"}


async def test_exclusions_by_id_ou_and_tag(org: Org) -> None:
    exclude = {
        "ids": [org.accounts["top"]],
        "ous": ["/Workloads/Prod/Legacy", org.ous["/Sandbox"]],
        "tags": {"env": "prod"},
    }
    result = await found(settings(ous=["/"], exclude=exclude), tags=True)
    assert names(result, org) == {"db", "deep", org.sandbox.account()}
    reasons = {a.account.id: a.reason for a in result.skipped}
    assert "excluded by ID" in reasons[org.accounts["top"]]
    assert "env=prod" in reasons[org.accounts["web"]]
    assert org.accounts["legacy"] not in reasons  # its OU was never walked


async def test_an_unknown_ou_is_an_error(org: Org) -> None:
    with pytest.raises(InputError, match=r"no such OU.*/Workloads/Nope"):
        await found(settings(ous=["/Workloads/Nope"]))


async def test_pages_are_followed(sandbox: MotoSandbox) -> None:
    org = Org(sandbox).create()
    for i in range(23):  # moto pages accounts by 20
        org.account(f"a{i}", "/Many", role=False)
    for i in range(22):
        org.ou(f"/Wide/O{i}")
    org.account("last", "/Wide/O21", role=False)
    result = await found(settings(ous=["/Many", "/Wide"]))
    assert len(result.selected) == 24


async def test_resolve_members_self_and_names(org: Org) -> None:
    me = org.sandbox.account()
    config = AccountsSettings.model_validate(
        {
            "role_name": "r",
            "members": [{"id": org.accounts["db"], "name": "database"}, "210987654321"],
            "organization": {"ous": ["/Workloads/Prod"]},
            "exclude": {"ids": ["210987654321"]},
            "include_self": True,
        }
    )

    async def client() -> Any:
        return org_client

    async with Aws().client("organizations") as org_client:
        result = await resolve(config, org=client, self_id=me, tags=False)
    assert result.selected[0].id == me and result.selected[0].hub
    db = next(a for a in result.selected if a.id == org.accounts["db"])
    assert db.name == "database" and db.ou_path == "/Workloads/Prod"
    assert "210987654321" not in {a.id for a in result.selected}
    whole = settings()
    async with Aws().client("organizations") as org_client:
        result = await resolve(whole, org=client, self_id=me, tags=False)
    assert me not in {a.id for a in result.selected}
    assert any(s.account.id == me and "include_self" in s.reason for s in result.skipped)
