"""Discovery: which users the rules select and the credentials they hold.

Cost is kept to what the rules need. Users are listed once (by the narrowest common path
prefix, 1,000 a page); names and paths are matched locally; tags are fetched only for
candidates of a rule that selects or excludes by tag.

Access keys and console passwords come from IAM's credential report when that is cheaper
than asking per user (``credential_report``): two or three calls for the whole account.
The report may be up to four hours old and has no access-key IDs, so it is used to find
what is *not* due: each user's report credentials are run through the planner (at a
margin ahead of now), and only users the plan would touch (rotate, disable, block) are
listed per user, with fresh last-used dates. Users the report does not know (created
since) are listed per user too. If the report is unavailable or throttled, every
candidate is listed per user.

Last-used dates are fetched only for kinds whose rule has ``disable_unused_after``. A
console password's age is the newest of IAM's dates and the sink's (``rotated_at``): IAM
reports a password change only in the credential report.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from rotator import audit, credential_report
from rotator.aws import all_pages
from rotator.bounded import bounded_map
from rotator.credential_report import CredentialReport, ReportUnavailable
from rotator.errors import NoSuchEntity
from rotator.kinds.base import (
    AccountHolders,
    CredentialKind,
    IamClient,
    TracksLastUse,
    TracksRotations,
)
from rotator.model import Action, Credential, Holder, Inventory, Kind
from rotator.planner import plan
from rotator.policy import Rule
from rotator.progress import INVENTORY, NO_PROGRESS, Counter, ProgressFn

REPORT_COST = 3  # calls to fetch the credential report (get, generate, get)
SCREEN_AHEAD = timedelta(hours=1)  # report data is screened as of now + this
_ACTS = frozenset({Action.ROTATE, Action.DISABLE, Action.BLOCK})
_NO_TAGS: Mapping[str, str] = MappingProxyType({})  # one for every untagged holder


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
        and any(fnmatch.fnmatchcase(name, p) for p in rule.select.patterns)
    )


def _wants_tags(rule: Rule) -> bool:
    return bool(rule.select.tags or rule.exclude.tags)


# What rotator reads of a ListUsers entry; the rest (UserId, ...) is dropped page by page.
USER_FIELDS = ("UserName", "Path", "Arn", "CreateDate", "PasswordLastUsed")


async def list_users(iam: IamClient, path_prefix: str) -> list[dict[str, Any]]:
    """Every IAM user under ``path_prefix`` (all pages, 1,000 a page), each with only the
    ``USER_FIELDS`` IAM gave, and one copy of each path for all the users that share it."""
    ids = {"path_prefix": path_prefix}
    paths: dict[str, str] = {}

    def trimmed(user: dict[str, Any]) -> dict[str, Any]:
        kept = {k: user[k] for k in USER_FIELDS if k in user}
        if isinstance(path := kept.get("Path"), str):
            kept["Path"] = paths.setdefault(path, path)
        return kept

    return await all_pages(
        iam.list_users,
        "Users",
        "ListUsers",
        ids,
        each=trimmed,
        PathPrefix=path_prefix,
        MaxItems=1000,
    )


async def user_tags(iam: IamClient, user: str) -> dict[str, str]:
    tags = await all_pages(
        iam.list_user_tags, "Tags", "ListUserTags", {"user": user}, UserName=user
    )
    return {t["Key"]: t["Value"] for t in tags}


def to_act_on(holder: Holder, rules: Sequence[Rule], now: datetime) -> set[tuple[Kind, str]]:
    """The (kind, slot)s of ``holder`` the planner would act on (rotate, disable, block)
    by ``now + SCREEN_AHEAD``. Pure; decisions only grow with time, so a credential not
    acted on by then is not acted on now either."""
    inventory = Inventory(account=holder.account, holders=(holder,))
    decisions = plan(inventory, rules, [], now + SCREEN_AHEAD)
    return {(d.kind, d.slot) for d in decisions if d.action in _ACTS}


def use_report(candidates: Mapping[str, Sequence[Rule]]) -> bool:
    """True if the credential report costs fewer calls than listing the candidates."""
    per_user = sum(
        len({r.kind for r in rules if r.facts.in_credential_report})
        for rules in candidates.values()
    )
    return per_user > REPORT_COST


class _Collector:
    """The per-user half of ``collect``: one user's holder, listing only what is needed."""

    def __init__(
        self,
        *,
        iam: IamClient,
        account: str,
        kinds: Mapping[Kind, CredentialKind],
        report: CredentialReport | None,
        now: datetime,
    ) -> None:
        self.iam, self.account, self.kinds, self.report, self.now = iam, account, kinds, report, now

    async def holder(self, user: dict[str, Any], candidates: Sequence[Rule]) -> Holder | None:
        name, path = user["UserName"], user.get("Path", "/")
        wanted = any(map(_wants_tags, candidates))
        tags = await user_tags(self.iam, name) if wanted else _NO_TAGS
        selecting = [r for r in candidates if r.select.matches(name, path, tags)]
        if not selecting:
            return None
        by_slot = {(r.kind, r.slot): r for r in selecting}
        row = self.report.row(name, user.get("CreateDate")) if self.report else None
        reported = (
            {k for k, r in by_slot.items() if r.facts.in_credential_report}
            if row is not None
            else set()
        )
        creds: dict[tuple[Kind, str], list[Credential]] = {}
        if row is not None:
            for key in reported:
                creds[key] = credential_report.credentials(row, key[0])
        holder = Holder(account=self.account, name=name, arn=user["Arn"], path=path, tags=tags)
        if reported:
            screened = replace(holder, credentials=tuple(c for cs in creds.values() for c in cs))
            reported -= to_act_on(screened, selecting, self.now)
        listed = tuple(key for key in by_slot if key not in reported)
        listed_at = time.monotonic() if listed else None  # before the first request goes
        for key in listed:
            creds[key] = await self._listed(holder, user, by_slot[key], by_slot)
        return replace(
            holder,
            credentials=tuple(c for cs in creds.values() for c in cs),
            listed=listed,
            listed_at=listed_at,
        )

    async def _listed(
        self,
        holder: Holder,
        user: dict[str, Any],
        rule: Rule,
        rules: Mapping[tuple[Kind, str], Rule],
    ) -> list[Credential]:
        """Credentials of ``rule``'s kind fresh from IAM, with last-used dates if a rule
        disables unused ones, and a console password's age corrected from the sink."""
        kind = self.kinds[rule.kind]
        listed = await kind.list(holder.name, rule.slot)
        if rule.kind is Kind.LOGIN_PROFILE:
            return [await self._password(holder, user, c, rule) for c in listed]
        unused = any(r.unused_after for (k, _), r in rules.items() if k is rule.kind)
        if unused and isinstance(kind, TracksLastUse):
            listed = [
                replace(c, last_used=await kind.last_used(holder.name, c.credential_id))
                if c.active
                else c
                for c in listed
            ]
        return listed

    async def _password(
        self, holder: Holder, user: dict[str, Any], cred: Credential, rule: Rule
    ) -> Credential:
        """The password with its last change (the newest of IAM's, the report's and, if
        the plan would act on it, the sink's) and its last use (ListUsers' is fresh)."""
        row = self.report.row(holder.name, user.get("CreateDate")) if self.report else None
        changed = cred.created
        if row is not None and row.password_last_changed is not None:
            changed = max(changed, row.password_last_changed)
        used = user.get("PasswordLastUsed")
        cred = replace(
            cred, created=changed, last_used=used if isinstance(used, datetime) else None
        )
        kind = self.kinds[rule.kind]
        if not isinstance(kind, TracksRotations):
            return cred
        if not to_act_on(replace(holder, credentials=(cred,)), [rule], self.now):
            return cred  # not due either way: no need to ask the sink
        set_by_rotator = await kind.rotated_at(rule, holder.name)
        if set_by_rotator is None or set_by_rotator <= changed:
            return cred
        return replace(cred, created=set_by_rotator)


async def _report(iam: IamClient) -> CredentialReport | None:
    try:
        return await credential_report.fetch(iam)
    except ReportUnavailable as exc:
        audit.get_logger().warning(
            audit.INVENTORY_REPORT_UNAVAILABLE,
            reason=f"credential report unavailable, listing per user: {exc}",
        )
        return None


async def collect(
    *,
    iam: IamClient,
    account: str,
    rules: Sequence[Rule],
    kinds: Mapping[Kind, CredentialKind],
    max_concurrency: int,
    now: datetime,
    report: bool | None = None,
    progress: ProgressFn = NO_PROGRESS,
) -> Inventory:
    """Read the holders the rules may select and their credentials of the rules' kinds:
    IAM users for per-user kinds, the account's own holders (server certificates) for the
    others. ``report``: use the credential report (True), never (False), or when it is
    cheaper (None). ``progress`` hears of each selected user read (phase ``INVENTORY``)."""
    by_account = [r for r in rules if r.enabled and r.facts.account_held]
    rules = [r for r in rules if r.enabled and not r.facts.account_held]
    account_holders: list[Holder] = []
    for kind in sorted({r.kind for r in by_account}):
        mine = [r for r in by_account if r.kind is kind]
        held = kinds[kind]
        if not isinstance(held, AccountHolders):  # its Registration checked it lists holders
            raise TypeError(f"kind {kind} is account-held but cannot list its holders")
        account_holders.extend(await held.account_holders(account, mine))
    listed = await list_users(iam, _common_prefix(rules)) if rules else []
    candidates = {
        u["UserName"]: [r for r in rules if _name_matches(r, u["UserName"], u.get("Path", "/"))]
        for u in listed
    }
    wanted = use_report(candidates) if report is None else report
    collector = _Collector(
        iam=iam,
        account=account,
        kinds=kinds,
        report=await _report(iam) if wanted else None,
        now=now,
    )
    selected = [u for u in listed if candidates[u["UserName"]]]
    read = Counter(progress, INVENTORY, len(selected))

    async def one(user: dict[str, Any]) -> Holder | None:
        try:
            return await collector.holder(user, candidates[user["UserName"]])
        except NoSuchEntity:
            return None  # deleted while we listed
        finally:
            read.tick()

    holders = await bounded_map(one, selected, max_concurrency)
    found = tuple(h for h in holders if h is not None) + tuple(account_holders)
    return Inventory(account=account, holders=found)
