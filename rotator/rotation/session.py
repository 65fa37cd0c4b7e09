"""What one sweep (or one operator command) shares: the account, the IAM clients and the
credential kinds bound to them, the sinks and their clients, and the moment it started."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rotator.aws import Aws, Clients, aws_errors
from rotator.errors import InputError, NoSuchEntity, WrongAccount
from rotator.inventory import user_tags
from rotator.journal.base import Journal
from rotator.kinds import CredentialKind, KindContext, build_kinds
from rotator.model import Holder, Kind
from rotator.policy import Rule
from rotator.rotation.own_key import OwnKey
from rotator.settings import Config, call_budget
from rotator.sinks import SecretSink, Sinks


@dataclass(frozen=True, kw_only=True)
class Session:
    """Clients, kinds and sinks for one sweep; valid inside ``open_session``'s block."""

    account: str
    iam: Any
    kinds: dict[Kind, CredentialKind]
    sinks: Sinks
    started_at: datetime
    dry_run: bool
    context: KindContext
    own: OwnKey  # the access key rotator signs with, switched when it rotates that key

    def kind(self, kind: Kind) -> CredentialKind:
        """The credential kind ``kind`` bound to this session's clients (built on first
        use for a kind neither the policy nor a rotation in flight named)."""
        if kind not in self.kinds:
            self.kinds.update(build_kinds(self.context, {kind}))
        return self.kinds[kind]

    def sink(self, rule: Rule) -> SecretSink:
        """The sink of ``rule`` for this session (on the session's clients)."""
        return self.sinks.for_rule(rule)

    async def owner_of(self, access_key_id: str) -> str:
        """The user an access key belongs to (IAM tells, for keys of this account).
        Raises ``InputError`` for a key this account does not have."""
        try:
            with aws_errors("GetAccessKeyLastUsed", credential_id=access_key_id):
                found = await self.iam.get_access_key_last_used(AccessKeyId=access_key_id)
        except NoSuchEntity:
            raise InputError(f"no access key {access_key_id} in account {self.account}") from None
        return str(found["UserName"])

    async def holder(self, user: str, kind: CredentialKind, slot: str = "") -> Holder:
        """One user, fresh from IAM, with its credentials of ``kind``. Raises
        ``InputError`` for a user this account does not have."""
        try:
            with aws_errors("GetUser", user=user):
                found = (await self.iam.get_user(UserName=user))["User"]
        except NoSuchEntity:
            raise InputError(f"no IAM user {user} in account {self.account}") from None
        return Holder(
            account=self.account,
            name=user,
            arn=found["Arn"],
            path=found.get("Path", "/"),
            tags=await user_tags(self.iam, user),
            credentials=tuple(await kind.list(user, slot)),
        )


@asynccontextmanager
async def open_session(
    *,
    aws: Aws,
    journal: Journal,
    config: Config,
    clock: Callable[[], datetime],
    dry_run: bool,
    hub: Aws | None = None,
    expect_account: str | None = None,
) -> AsyncIterator[Session]:
    """Open the IAM clients (one with SDK retries, one without for calls that are not
    idempotent) and bind every kind the policy or a rotation in flight needs. The sinks'
    clients are opened on first use and closed with the rest when the block ends. In an
    organization sweep, ``hub`` is the hub account (for ``sink_in = "hub"`` sinks) and
    ``expect_account`` the account ``aws`` must be in (``WrongAccount`` otherwise)."""
    async with (
        aws.client("iam") as iam,
        aws.client("iam", retries=1) as iam_once,
        aws.client("sts") as sts,
        Clients(aws) as clients,
        Clients(hub or aws) as hub_clients,
        AsyncExitStack() as stack,
    ):
        # One shared signing client per verification region (regional STS endpoints).
        regions = config.verify.regions or (aws.session_region,)
        signed_sts = {
            region: await stack.enter_async_context(
                aws.signing_client("sts", region=region, retries=1)
            )
            for region in regions
        }
        with aws_errors("GetCallerIdentity"):
            account = str((await sts.get_caller_identity())["Account"])
        if expect_account is not None and account != expect_account:
            raise WrongAccount(expect_account, account)
        active = await journal.list_active()
        kinds = {r.kind for r in config.rules} | {r.kind for r in active}
        sinks = Sinks(clients, hub_clients if hub is not None else None)
        ctx = KindContext(
            iam=iam,
            iam_once=iam_once,
            aws=aws,
            account=account,
            verify=config.verify,
            sink=sinks.for_rule,
            signed_sts=signed_sts,
        )
        yield Session(
            account=account,
            iam=iam,
            kinds=build_kinds(ctx, kinds),
            sinks=sinks,
            started_at=clock(),
            dry_run=dry_run,
            context=ctx,
            own=OwnKey(aws, call_budget(config.aws)),
        )
