"""Which accounts a sweep covers: ``[accounts]`` resolved against AWS Organizations.

Discovery walks the organization from its root, breadth first, through every level of
nested OUs (each ``List*`` call followed page by page with ``NextToken``), lists the
accounts of the OUs selected (``organization.ous``, by ID or path; all when empty; with
``recursive`` the OUs nested under them too), keeps only ACTIVE accounts, and drops the
excluded ones (by ID, by OU — an excluded OU's subtree is not even walked — or by tag).
It runs with the caller's own credentials (the management account or a delegated
administrator) and calls Organizations one request at a time (its API throttles hard).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rotator.accounts import AccountsSettings
from rotator.aws import aws_errors
from rotator.errors import InputError
from rotator.policy import Account


@dataclass(frozen=True, kw_only=True)
class Skipped:
    """An account discovery found and left out, and why."""

    account: Account
    reason: str


@dataclass(frozen=True, kw_only=True)
class Accounts:
    """The accounts to sweep, and those found but left out (excluded, not ACTIVE)."""

    selected: tuple[Account, ...]
    skipped: tuple[Skipped, ...] = ()


@dataclass(frozen=True)
class _Ou:
    id: str
    ids: tuple[str, ...]  # from the root down, this OU included
    path: str


async def _pages(
    call: Callable[..., Awaitable[dict[str, Any]]], items: str, operation: str, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every item under ``items`` of an Organizations ``List*`` call (``NextToken`` paging)."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        with aws_errors(operation, **{k: str(v) for k, v in kwargs.items()}):
            page = await call(**kwargs, **({"NextToken": token} if token else {}))
        found.extend(page.get(items, []))
        token = page.get("NextToken")
        if not token:
            return found


def _active(raw: dict[str, Any]) -> bool:
    # "State" replaces "Status" (deprecated 2026); either may be present.
    return str(raw.get("State") or raw.get("Status") or "") == "ACTIVE"


def _child_path(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


def _selected(ou: _Ou, selectors: Sequence[str], recursive: bool) -> bool:
    """Are ``ou``'s own accounts selected?"""
    if not selectors:
        return True
    probe = Account(id="", ou_ids=ou.ids, ou_path=ou.path)
    return any(probe.in_ou(s, recursive=recursive) for s in selectors)


async def discover(org: Any, settings: AccountsSettings, *, tags: bool) -> Accounts:
    """The organization's accounts ``settings.organization`` selects, less exclusions.
    ``tags``: read each account's tags (for tag exclusions and rules' ``account_tags``).
    Raises ``InputError`` for an OU the organization does not have."""
    assert settings.organization is not None
    selectors = settings.organization.ous
    recursive = settings.organization.recursive
    roots = await _pages(org.list_roots, "Roots", "ListRoots")
    if not roots:
        raise InputError("the organization has no root (is this account in an organization?)")
    root = _Ou(id=str(roots[0]["Id"]), ids=(str(roots[0]["Id"]),), path="/")
    skipped: list[Skipped] = []
    seen_ous: list[_Ou] = []
    by_id: dict[str, Account] = {}
    queue = [root]
    while queue:
        ou = queue.pop(0)
        probe = Account(id="", ou_ids=ou.ids, ou_path=ou.path)
        if any(probe.in_ou(x) for x in settings.exclude.ous):
            continue  # an excluded OU: nothing under it is swept, so it is not walked
        seen_ous.append(ou)
        children = await _pages(
            org.list_organizational_units_for_parent,
            "OrganizationalUnits",
            "ListOrganizationalUnitsForParent",
            ParentId=ou.id,
        )
        queue.extend(
            _Ou(id=str(c["Id"]), ids=(*ou.ids, str(c["Id"])), path=_child_path(ou.path, c["Name"]))
            for c in children
        )
        if not _selected(ou, selectors, recursive):
            continue
        listed = await _pages(
            org.list_accounts_for_parent, "Accounts", "ListAccountsForParent", ParentId=ou.id
        )
        for raw in listed:
            account = Account(
                id=str(raw["Id"]), name=str(raw.get("Name") or ""), ou_ids=ou.ids, ou_path=ou.path
            )
            if not _active(raw):
                state = raw.get("State") or raw.get("Status")
                skipped.append(Skipped(account=account, reason=f"account is {state}, not ACTIVE"))
                continue
            by_id[account.id] = account
    _check_selectors(selectors, seen_ous, settings.exclude.ous)
    selected: list[Account] = []
    for account in by_id.values():
        if tags:
            listed_tags = await _pages(
                org.list_tags_for_resource, "Tags", "ListTagsForResource", ResourceId=account.id
            )
            account = Account(
                id=account.id,
                name=account.name,
                ou_ids=account.ou_ids,
                ou_path=account.ou_path,
                tags={str(t["Key"]): str(t["Value"]) for t in listed_tags},
            )
        reason = settings.exclude.reason(account)
        if reason is not None:
            skipped.append(Skipped(account=account, reason=reason))
        else:
            selected.append(account)
    return Accounts(selected=tuple(selected), skipped=tuple(skipped))


def _check_selectors(selectors: Sequence[str], ous: Sequence[_Ou], excluded: Sequence[str]) -> None:
    """Every OU the policy selects must exist (a typo must not silently sweep nothing)."""
    known = {ou.id for ou in ous} | {ou.path for ou in ous}
    missing = [
        s
        for s in selectors
        if s not in known and not any(s == x or s.startswith(x + "/") for x in excluded)
    ]
    if missing:
        raise InputError(
            f"[accounts.organization] ous: no such OU in the organization: {', '.join(missing)}"
        )


async def resolve(
    settings: AccountsSettings,
    *,
    org: Callable[[], Awaitable[Any]],
    self_id: str,
    tags: bool,
) -> Accounts:
    """Every account ``settings`` names: the listed members, the discovered ones (``org``
    opens the Organizations client, only if discovery is configured), and the caller's own
    account if ``include_self`` (swept with its own credentials). The caller's account is
    otherwise left out. A member listed explicitly keeps the name given in the policy."""
    found: dict[str, Account] = {}
    skipped: list[Skipped] = []
    if settings.organization is not None:
        discovered = await discover(await org(), settings, tags=tags)
        found.update((a.id, a) for a in discovered.selected)
        skipped.extend(discovered.skipped)
    for member in settings.members:
        known = found.get(member.id)
        if member.id in settings.exclude.ids:
            reason = f"account {member.id} is excluded by ID"
            skipped.append(Skipped(account=Account(id=member.id, name=member.name), reason=reason))
            continue
        found[member.id] = Account(
            id=member.id,
            name=member.name or (known.name if known else ""),
            ou_ids=known.ou_ids if known else (),
            ou_path=known.ou_path if known else "",
            tags=known.tags if known else {},
        )
    own = found.pop(self_id, None)
    if settings.include_self:
        base = own or Account(id=self_id)
        found[self_id] = Account(
            id=self_id,
            name=base.name,
            ou_ids=base.ou_ids,
            ou_path=base.ou_path,
            tags=base.tags,
            hub=True,
        )
    elif own is not None:
        reason = "the caller's own account (set include_self = true to sweep it)"
        skipped.append(Skipped(account=own, reason=reason))
    ordered = sorted(found.values(), key=lambda a: (not a.hub, a.id))
    return Accounts(selected=tuple(ordered), skipped=tuple(skipped))
