"""One sweep over many accounts: the ``[accounts]`` of the policy, each swept by its own
``Sweep`` with its own assumed-role session.

The hub (the identity rotator runs as) resolves the accounts (``rotator.organizations``),
then sweeps them concurrently: at most ``accounts.max_accounts`` accounts at once, at most
``accounts.per_account_concurrency`` decisions in flight in one account (IAM throttles per
account), at most ``max_concurrency`` over all of them. Each member account is entered by
assuming its member role (re-assumed before the credentials expire); the hub's own account
(``include_self``) is swept with the hub's credentials. A rule limited to other accounts
is disabled for an account (the rotations it started there still finish).

An account that cannot be swept — its role is missing, ``AccessDenied``, throttled out, or
even a bug — is reported for that account (``AccountResult.error``) and never stops the
others. The journal, leases, audit events (``account`` is bound for each account's work)
and results carry the account.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rotator import audit, partitions
from rotator.accounts import AccountsSettings, select_accounts
from rotator.aws import Aws, aws_errors
from rotator.errors import AwsError, InputError, RotatorError
from rotator.journal.base import Journal
from rotator.model import Plan, new_id, utc_iso, utcnow
from rotator.organizations import Accounts, Skipped, resolve
from rotator.policy import Account
from rotator.progress import NO_PROGRESS, ProgressFn
from rotator.rotation.emergency import Request
from rotator.rotation.report import Report, Result, SweepResult, json_counts
from rotator.rotation.requests import Requests
from rotator.rotation.rotations import Rotations
from rotator.rotation.steps import StepResult
from rotator.rotation.sweep import Sweep
from rotator.settings import Config
from rotator.sinks.base import naming_accounts

ACCOUNT_FAILED = "account-failed"


@dataclass(frozen=True, kw_only=True)
class AccountResult:
    """What one account's sweep (or plan) gave, or why the account could not be swept."""

    account: Account
    sweep: SweepResult | None = None
    plan: Plan | None = None
    error: str | None = None  # the AWS error code (AccessDenied ...) or the error's class
    reason: str = ""

    @property
    def ok(self) -> bool:
        if self.error is not None:
            return False
        return self.sweep.ok if self.sweep is not None else True

    @property
    def outcome(self) -> str:
        """``account-failed``, else ``ok`` or ``not-ok`` from the account's sweep."""
        if self.error is not None:
            return ACCOUNT_FAILED
        return "ok" if self.ok else "not-ok"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.account.as_dict(),
            "outcome": self.outcome,
            "ok": self.ok,
            "error": self.error,
            "reason": self.reason,
        }
        if self.sweep is not None:
            out["sweep"] = self.sweep.as_dict()
        return out


@dataclass(frozen=True, kw_only=True)
class OrgResult:
    """Everything one sweep over many accounts did, per account."""

    run_id: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime
    accounts: tuple[AccountResult, ...]
    skipped: tuple[Skipped, ...] = ()

    @property
    def ok(self) -> bool:
        """False if an account could not be swept, or anything in one failed, was blocked
        or must be retried."""
        return all(a.ok for a in self.accounts)

    def counts(self) -> dict[str, int]:
        """The accounts (swept, failed, skipped) and the per-``Result`` totals over all."""
        totals: Counter[str] = Counter()
        for one in self.accounts:
            if one.sweep is not None:
                totals.update(one.sweep.counts())
        counts = {
            "accounts": len(self.accounts),
            "accounts_failed": sum(a.error is not None for a in self.accounts),
            "accounts_skipped": len(self.skipped),
            "decisions": totals["decisions"],
            "started": totals["started"],
        }
        counts.update({str(r): totals[str(r)] for r in Result})
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "started_at": utc_iso(self.started_at),
            "finished_at": utc_iso(self.finished_at),
            "counts": json_counts(self.counts()),
            "ok": self.ok,
            "accounts": [a.as_dict() for a in self.accounts],
            "skipped": [{**s.account.as_dict(), "reason": s.reason} for s in self.skipped],
        }


def config_for(config: Config, account: Account) -> Config:
    """The policy as one account's sweep sees it: rules limited to other accounts disabled
    (their rotations in flight there still finish), ``max_concurrency`` the per-account
    limit."""
    accounts = config.accounts
    assert accounts is not None
    rules = [
        r if r.applies_to(account) else r.model_copy(update={"enabled": False})
        for r in config.rules
    ]
    return config.model_copy(
        update={"rules": rules, "max_concurrency": accounts.per_account_concurrency}
    )


def _error(exc: BaseException) -> str:
    return exc.code if isinstance(exc, AwsError) else type(exc).__name__


class OrgSweep:
    """Sweeps (and plans) every account ``[accounts]`` names, each on its own session."""

    def __init__(
        self,
        *,
        config: Config,
        journal: Journal,
        aws: Aws,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
    ) -> None:
        if config.accounts is None:
            raise ValueError("an organization sweep needs an [accounts] section")
        self.config = config
        self.settings: AccountsSettings = config.accounts
        self.journal = journal
        self.hub = aws
        self.clock = clock
        self.owner = owner
        self._log = audit.get_logger()

    async def accounts(self, only: Sequence[str] = (), ous: Sequence[str] = ()) -> Accounts:
        """The accounts to sweep (``resolve``), narrowed to ``only`` / ``ous`` if given."""
        async with self.hub.client("sts") as sts:
            with aws_errors("GetCallerIdentity"):
                me = str((await sts.get_caller_identity())["Account"])
        tags = bool(self.settings.exclude.tags) or any(r.account_tags for r in self.config.rules)
        async with self.hub.client("organizations", region="us-east-1") as org:

            async def client() -> Any:
                return org

            found = await resolve(self.settings, org=client, self_id=me, tags=tags)
        return Accounts(
            selected=tuple(select_accounts(found.selected, only, ous)), skipped=found.skipped
        )

    async def run(
        self,
        *,
        dry_run: bool = False,
        time_left: Callable[[], float] | None = None,
        progress: ProgressFn = NO_PROGRESS,
        only: Sequence[str] = (),
        ous: Sequence[str] = (),
        accounts: Sequence[Account] | None = None,
    ) -> OrgResult:
        """One sweep of every account (or of ``accounts``, already resolved: a Step
        Functions batch); never raises for one account's trouble."""
        run_id = new_id("org")
        audit.bind(org_run_id=run_id, dry_run=dry_run)
        started_at = self.clock()
        started = time.monotonic()
        if accounts is None:
            found = await self.accounts(only, ous)
            selected, skipped = found.selected, found.skipped
        else:
            selected, skipped = tuple(accounts), ()
            self._check_given(selected)
        for left_out in skipped:
            self._log.info(
                audit.ACCOUNT_SKIPPED, account=left_out.account.id, reason=left_out.reason
            )
        self._log.info(audit.ORG_STARTED, accounts=len(selected))
        at_once = asyncio.Semaphore(self.settings.max_accounts)
        shared = asyncio.Semaphore(self.config.max_concurrency)

        async def one(account: Account) -> AccountResult:
            async with at_once:
                return await self._sweep_one(account, dry_run, time_left, progress, shared)

        results = await asyncio.gather(*(one(a) for a in selected))
        result = OrgResult(
            run_id=run_id,
            dry_run=dry_run,
            started_at=started_at,
            finished_at=self.clock(),
            accounts=tuple(results),
            skipped=tuple(skipped),
        )
        self._log.info(
            audit.ORG_FINISHED,
            duration_ms=int((time.monotonic() - started) * 1000),
            **result.counts(),
        )
        return result

    def _check_given(self, accounts: Sequence[Account]) -> None:
        """Accounts handed in (a Step Functions batch) must be ones ``[accounts]`` could
        name: never an excluded ID, and with explicit members only, one of them (checking
        discovered ones again would cost an Organizations walk per batch). Raises
        ``InputError``."""
        allowed = {m.id for m in self.settings.members}
        for account in accounts:
            if account.id in self.settings.exclude.ids:
                raise InputError(f"account {account.id} is excluded by [accounts]")
            if account.hub and not self.settings.include_self:
                raise InputError(f"account {account.id}: include_self is off")
            if self.settings.organization is None and not account.hub and account.id not in allowed:
                raise InputError(f"account {account.id} is not among [accounts] members")

    async def plan(
        self,
        *,
        progress: ProgressFn = NO_PROGRESS,
        only: Sequence[str] = (),
        ous: Sequence[str] = (),
    ) -> list[AccountResult]:
        """What a sweep would do in each account, changing nothing."""
        found = await self.accounts(only, ous)
        at_once = asyncio.Semaphore(self.settings.max_accounts)

        async def one(account: Account) -> AccountResult:
            audit.bind(account=account.id)
            async with at_once:
                try:
                    with naming_accounts({account.id: account.name} if account.name else {}):
                        sweep = Sweep(await self._rotations(account))
                        return AccountResult(
                            account=account, plan=await sweep.plan(progress=progress)
                        )
                except Exception as exc:
                    return self.failed(account, exc)

        return list(await asyncio.gather(*(one(a) for a in found.selected)))

    async def account_of_key(self, access_key_id: str) -> Account:
        """The account an access key belongs to (``sts:GetAccessKeyInfo``, with the hub's
        credentials), which must be one ``[accounts]`` covers. Raises ``InputError``."""
        async with self.hub.client("sts") as sts:
            with aws_errors("GetAccessKeyInfo", credential_id=access_key_id):
                found = str((await sts.get_access_key_info(AccessKeyId=access_key_id))["Account"])
        return await self.account(found)

    async def account(self, account_id: str) -> Account:
        """The account ``account_id`` as ``[accounts]`` resolves it (its name, OUs, tags).
        Raises ``InputError`` for an account it does not cover."""
        found = await self.accounts([account_id])
        if not found.selected:
            why = next((s.reason for s in found.skipped if s.account.id == account_id), "")
            raise InputError(
                f"account {account_id} is not among the accounts [accounts] covers"
                + (f" ({why})" if why else "")
            )
        return found.selected[0]

    async def rotate_now(
        self,
        request: Request,
        *,
        access_key_id: str | None = None,
        account: str | None = None,
        dry_run: bool = False,
        patience: timedelta | None = None,
    ) -> Report:
        """``rotator rotate`` in a member account: the one the leaked key belongs to
        (``account_of_key``) or ``account``. The member role issues the replacement, so a
        quarantine policy AWS attached to the user (it denies the user's own
        ``CreateAccessKey``) is no obstacle, and it is left in place."""
        if access_key_id is not None:
            target = await self.account_of_key(access_key_id)
            if account is not None and account != target.id:
                raise InputError(f"{access_key_id} belongs to account {target.id}, not {account}")
        elif account is not None:
            target = await self.account(account)
        else:
            raise InputError("name the account (--account) or the access key (--access-key-id)")
        audit.bind(account=target.id)
        with naming_accounts({target.id: target.name} if target.name else {}):
            requests = Requests(await self._rotations(target))
            return await requests.rotate(
                request, access_key_id=access_key_id, dry_run=dry_run, patience=patience
            )

    async def rollback(self, rotation_id: str) -> StepResult:
        """``rotator rollback`` of a rotation in any account ``[accounts]`` covers: in that
        account, through its member role."""
        rotation = await self.journal.get(rotation_id)
        target = await self.account(rotation.account)
        audit.bind(account=target.id)
        with naming_accounts({target.id: target.name} if target.name else {}):
            return await Requests(await self._rotations(target)).rollback(rotation_id)

    async def aws_for(self, account: Account) -> Aws:
        """How to act in ``account``: the member role (assumed now, and again before it
        expires), or the hub's own credentials for the hub's account."""
        rate = self.settings.per_account_rate
        if account.hub:
            return self.hub.limited(rate)
        return await self.hub.assume_role(
            self.settings.role_for(account.id, partitions.for_region(self.hub.session_region)),
            session_name=self.settings.session_name,
            external_id=self.settings.external_id,
            duration=self.settings.session_duration,
            iam_rate=rate,
        )

    async def _rotations(self, account: Account) -> Rotations:
        """The ``Rotations`` of one account, on its own session (``aws_for``)."""
        aws = await self.aws_for(account)
        return Rotations(
            config=config_for(self.config, account),
            journal=self.journal,
            aws=aws,
            clock=self.clock,
            owner=self.owner,
            hub=None if account.hub else self.hub,
            account=account.id,
        )

    async def _sweep_one(
        self,
        account: Account,
        dry_run: bool,
        time_left: Callable[[], float] | None,
        progress: ProgressFn,
        shared: asyncio.Semaphore,
    ) -> AccountResult:
        audit.bind(account=account.id)
        try:
            with naming_accounts({account.id: account.name} if account.name else {}):
                sweep = Sweep(await self._rotations(account), shared)
                result = await sweep.run(dry_run=dry_run, time_left=time_left, progress=progress)
            return AccountResult(account=account, sweep=result)
        except Exception as exc:  # this account only: the others go on
            return self.failed(account, exc)

    def failed(self, account: Account, exc: Exception) -> AccountResult:
        """The result (and the ``account.failed`` event) of an account that could not be
        swept, planned or surveyed."""
        reason = str(exc) if isinstance(exc, RotatorError) else f"internal error: {exc}"
        self._log.error(
            audit.ACCOUNT_FAILED,
            account=account.id,
            error=_error(exc),
            reason=reason,
            exc_info=not isinstance(exc, RotatorError),
        )
        return AccountResult(account=account, error=_error(exc), reason=reason)
