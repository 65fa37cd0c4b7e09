"""Discovery: which users the rules select and the credentials they hold.

Cost is kept to what the rules need: users are listed once (by the narrowest common path
prefix), names and paths are matched locally, tags are fetched only for candidates of a
rule that selects or excludes by tag, and credentials only for the kinds of the rules that
select a user. Per-user calls run concurrently under ``max_concurrency``.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Mapping, Sequence
from datetime import datetime

from rotator.aws import aws_errors
from rotator.errors import NoSuchEntity
from rotator.kinds.base import CredentialKind, IamClient
from rotator.model import Credential, Holder, Inventory, Kind
from rotator.policy import Rule


def _common_prefix(rules: Sequence[Rule]) -> str:
    """The longest path prefix every rule's selector shares, cut after a '/'."""
    prefixes = [r.select.path_prefix for r in rules] or ["/"]
    shared = prefixes[0]
    for prefix in prefixes[1:]:
        while not prefix.startswith(shared):
            shared = shared[:-1]
    return shared[: shared.rfind("/") + 1] or "/"


def _name_matches(rule: Rule, name: str, path: str) -> bool:
    return (
        rule.enabled
        and path.startswith(rule.select.path_prefix)
        and any(fnmatch.fnmatchcase(name, p) for p in rule.select.users)
    )


def _wants_tags(rule: Rule) -> bool:
    return bool(rule.select.tags or rule.exclude.tags)


async def list_users(iam: IamClient, path_prefix: str) -> list[dict[str, str]]:
    """Every IAM user under ``path_prefix`` (all pages)."""
    users: list[dict[str, str]] = []
    marker: str | None = None
    while True:
        kwargs = {"PathPrefix": path_prefix, **({"Marker": marker} if marker else {})}
        with aws_errors("ListUsers", path_prefix=path_prefix):
            page = await iam.list_users(**kwargs)
        users.extend(page.get("Users", []))
        if not page.get("IsTruncated"):
            return users
        marker = page["Marker"]


async def user_tags(iam: IamClient, user: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    marker: str | None = None
    while True:
        kwargs = {"UserName": user, **({"Marker": marker} if marker else {})}
        with aws_errors("ListUserTags", user=user):
            page = await iam.list_user_tags(**kwargs)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        if not page.get("IsTruncated"):
            return tags
        marker = page["Marker"]


async def collect(
    *,
    iam: IamClient,
    account: str,
    rules: Sequence[Rule],
    kinds: Mapping[Kind, CredentialKind],
    max_concurrency: int,
    now: datetime,
) -> Inventory:
    """Read the holders the rules may select and their credentials of the rules' kinds:
    IAM users for per-user kinds, the account's own holders (server certificates) for the
    others."""
    by_account = [r for r in rules if r.enabled and not kinds[r.kind].per_user]
    rules = [r for r in rules if r.enabled and kinds[r.kind].per_user]
    account_holders: list[Holder] = []
    for kind in sorted({r.kind for r in by_account}):
        mine = [r for r in by_account if r.kind is kind]
        account_holders.extend(await kinds[kind].account_holders(account, mine))
    listed = await list_users(iam, _common_prefix(rules)) if rules else []
    limit = asyncio.Semaphore(max_concurrency)

    async def one(user: dict[str, str]) -> Holder | None:
        name, path = user["UserName"], user.get("Path", "/")
        candidates = [r for r in rules if _name_matches(r, name, path)]
        if not candidates:
            return None
        async with limit:
            try:
                tags = await user_tags(iam, name) if any(map(_wants_tags, candidates)) else {}
                selecting = [r for r in candidates if r.select.matches(name, path, tags)]
                creds: list[Credential] = []
                for rule in {(r.kind, r.slot): r for r in selecting}.values():
                    creds.extend(await kinds[rule.kind].list(name, rule.slot))
            except NoSuchEntity:
                return None  # deleted while we listed
        if not selecting:
            return None
        return Holder(
            account=account,
            name=name,
            arn=user["Arn"],
            path=path,
            tags=tags,
            credentials=tuple(creds),
        )

    holders = await asyncio.gather(*(one(u) for u in listed))
    found = tuple(h for h in holders if h is not None) + tuple(account_holders)
    return Inventory(account=account, holders=found, taken_at=now)


async def holder(
    *, iam: IamClient, account: str, user: str, kinds: Mapping[Kind, CredentialKind]
) -> Holder:
    """One user, fresh from IAM, with credentials of ``kinds``. Raises ``NoSuchEntity``."""
    with aws_errors("GetUser", user=user):
        found = (await iam.get_user(UserName=user))["User"]
    creds: list[Credential] = []
    for kind in sorted(kinds):
        creds.extend(await kinds[kind].list(user))
    return Holder(
        account=account,
        name=user,
        arn=found["Arn"],
        path=found.get("Path", "/"),
        tags=await user_tags(iam, user),
        credentials=tuple(creds),
    )
