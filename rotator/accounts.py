"""Many accounts: the policy file's ``[accounts]`` section and the ``Account`` type.

Pure validation and matching; nothing here calls AWS (discovery is
``rotator.organizations``). Accounts are listed explicitly (``members``) or discovered from
AWS Organizations (``organization``: the whole org or some OUs, by ID or by path,
recursively through nested OUs), minus ``exclude`` (by ID, OU or tag). Rotator gets into
each account by assuming a member role (``role_name`` or a ``role_arn`` template) with an
optional external ID. Rules may be limited to some accounts (``Rule.accounts``,
``Rule.ous``, ``Rule.account_tags``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from rotator.policy import Account, AccountId, Duration, OuRef, format_duration

_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_ROLE_PATH = re.compile(r"^/(?:[\x21-\x7e]*/)?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\{account\}:role/[\w+=,.@/-]{1,512}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _member(value: Any) -> Any:
    if isinstance(value, int):  # TOML drops a number's leading zeros: IDs are strings
        raise ValueError(f"{value!r} is not an AWS account ID (12 digits, as a string)")
    return {"id": value} if isinstance(value, str) else value


class Member(_Strict):
    """An account listed explicitly: ``"111122223333"`` or ``{id = "…", name = "prod"}``."""

    id: AccountId
    name: str = Field(default="", max_length=128)


class Organization(_Strict):
    """Discover accounts from AWS Organizations (with the caller's own credentials: run
    from the management account or a delegated administrator). ``ous`` empty: the whole
    organization. ``recursive``: accounts in OUs nested under a listed OU too."""

    ous: list[OuRef] = Field(default_factory=list)
    recursive: bool = True


class AccountExclude(_Strict):
    """Accounts never swept: any condition excludes (an excluded OU excludes the OUs
    nested under it)."""

    ids: list[AccountId] = Field(default_factory=list)
    ous: list[OuRef] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    def reason(self, account: Account) -> str | None:
        """Why ``account`` is excluded, or None."""
        if account.id in self.ids:
            return f"account {account.id} is excluded by ID"
        for ou in self.ous:
            if account.in_ou(ou):
                return f"account {account.id} is in excluded OU {ou}"
        for key, value in self.tags.items():
            if account.tags.get(key) == value:
                return f"account {account.id} has excluded tag {key}={value}"
        return None


MIN_SESSION = timedelta(minutes=15)
MAX_SESSION = timedelta(hours=12)


class AccountsSettings(_Strict):
    """``[accounts]``: which accounts a sweep covers and how rotator gets into each."""

    members: list[Annotated[Member, BeforeValidator(_member)]] = Field(default_factory=list)
    organization: Organization | None = None
    exclude: AccountExclude = Field(default_factory=AccountExclude)
    include_self: bool = False  # also sweep the caller's own account (no role assumed)
    # How to get in: the member role, by name (with an optional path) or as an ARN template.
    role_name: str | None = None
    role_path: str = "/"
    role_arn: str | None = None  # e.g. "arn:aws:iam::{account}:role/ops/rotator-member"
    external_id: str | None = None
    session_name: str = "rotator"
    session_duration: Duration = timedelta(hours=1)
    # Accounts swept at once, and decisions in flight within one account (IAM throttles
    # per account). The top-level max_concurrency bounds decisions over all accounts.
    max_accounts: int = Field(default=8, ge=1, le=256)
    per_account_concurrency: int = Field(default=4, ge=1, le=64)
    # IAM requests per second in one account (retries included); none: no limit but the
    # concurrency. IAM's own limits are per account and shared with every other caller.
    per_account_rate: float | None = Field(default=None, ge=0.1, le=1000)

    @model_validator(mode="after")
    def _check(self) -> AccountsSettings:
        if not self.members and self.organization is None and not self.include_self:
            raise ValueError(
                "no accounts: list members = [...], discover with [accounts.organization], "
                "or set include_self = true"
            )
        ids = [m.id for m in self.members]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"members lists account(s) more than once: {', '.join(duplicated)}")
        if self.role_name is not None and self.role_arn is not None:
            raise ValueError("give role_name or role_arn, not both")
        if (self.members or self.organization is not None) and not (
            self.role_name or self.role_arn
        ):
            raise ValueError(
                "role_name (or a role_arn template) is needed to get into member accounts"
            )
        if self.role_name is not None and not _ROLE_NAME.match(self.role_name):
            raise ValueError(f"role_name {self.role_name!r} is not an IAM role name")
        if not _ROLE_PATH.match(self.role_path):
            raise ValueError(f"role_path {self.role_path!r} must start and end with '/'")
        if self.role_arn is not None and not _ROLE_ARN.match(self.role_arn):
            raise ValueError(
                f"role_arn {self.role_arn!r} must be a role ARN template with {{account}} as "
                "its account, e.g. arn:aws:iam::{account}:role/rotator-member"
            )
        if self.external_id is not None and not _EXTERNAL_ID.match(self.external_id):
            raise ValueError("external_id must be 2 to 1224 characters of [\\w+=,.@:/-]")
        if not _SESSION_NAME.match(self.session_name):
            raise ValueError(
                f"session_name {self.session_name!r} must be 2 to 64 characters of [\\w+=,.@-]"
            )
        if not MIN_SESSION <= self.session_duration <= MAX_SESSION:
            raise ValueError(
                f"session_duration {format_duration(self.session_duration)} must be between "
                f"{format_duration(MIN_SESSION)} and {format_duration(MAX_SESSION)}"
            )
        return self

    def role_for(self, account: str, partition: str = "aws") -> str:
        """The member role's ARN in ``account``, in ``partition`` (``aws-cn``, ``aws-us-gov``
        …: the hub's; a ``role_arn`` template names its own)."""
        if self.role_arn is not None:
            return self.role_arn.format(account=account)
        return f"arn:{partition}:iam::{account}:role{self.role_path}{self.role_name}"

    @property
    def discovers(self) -> bool:
        return self.organization is not None


def select_accounts(
    found: Sequence[Account], only: Sequence[str] = (), ous: Sequence[str] = ()
) -> list[Account]:
    """An operator's filter (``--account``, ``--ou``): the accounts of ``found`` whose ID is
    in ``only`` or that are in one of ``ous`` (either; all when both are empty)."""
    if not only and not ous:
        return list(found)
    return [a for a in found if a.id in only or any(a.in_ou(ou) for ou in ous)]
