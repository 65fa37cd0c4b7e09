"""Access keys: two per user; IAM makes the secret, which it returns exactly once.

Declares the kind once: ``AccessKeyRule`` (options, and the facts as ``facts``),
``AccessKeys`` (the IAM calls) and ``REGISTRATION``.

Verification signs ``sts:GetCallerIdentity`` with the new key and checks the ARN is the
user's, retrying with capped exponential backoff while IAM's change propagates
(``InvalidClientTokenId`` / ``SignatureDoesNotMatch`` for a few seconds after create) — in
every region of ``[verify] regions``, each ``consecutive`` times in a row: IAM's data
planes are regional and a key may work in one seconds before another.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from time import monotonic
from typing import Any, ClassVar, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from rotator.aws import Credentials, aws_errors, convert, signing_as
from rotator.backoff import delays, pause
from rotator.errors import NoSuchEntity, Transient, VerificationFailed, WrongIdentity
from rotator.kinds.base import IamActions, KindContext, Registration
from rotator.model import Credential, Kind, KindFacts, Shape, Status
from rotator.policy import Duration, Rule
from rotator.sinks.base import SecretEntry

ACCESS_KEY_ID = "AccessKeyId"
SECRET_ACCESS_KEY = "SecretAccessKey"  # noqa: S105 (a field name, not a secret)


class AccessKeyRule(Rule):
    """``kind = "access-key"``."""

    facts: ClassVar[KindFacts] = KindFacts(
        kind=Kind.ACCESS_KEY,
        shape=Shape.TWO_SLOT,
        noun="access key",
        limit=2,
        in_credential_report=True,
    )
    kind: Literal[Kind.ACCESS_KEY]
    # Deactivate an access key unused for this long, or never used and older (CIS 1.12).
    disable_unused_after: Duration | None = None

    @property
    def unused_after(self) -> timedelta | None:
        return self.disable_unused_after


def is_user_arn(arn: str, account: str, user: str) -> bool:
    """True if ``arn`` is IAM user ``user`` of ``account`` (any path, any partition):
    ``arn:PARTITION:iam::ACCOUNT:user/PATH/NAME``. User names are unique in an account."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam" or parts[4] != account:
        return False
    resource = parts[5]
    return resource.startswith("user/") and resource.rsplit("/", 1)[-1] == user


class AccessKeys:
    """The IAM calls of ``kind = "access-key"``; tracks last use, disables."""

    kind = Kind.ACCESS_KEY

    def __init__(self, ctx: KindContext) -> None:
        self._ctx = ctx
        self._iam = ctx.iam

    async def list(self, user: str, slot: str = "") -> list[Credential]:
        with aws_errors("ListAccessKeys", user=user):
            listed = await self._iam.list_access_keys(UserName=user)
        return [
            Credential(
                kind=self.kind,
                credential_id=k[ACCESS_KEY_ID],
                status=Status(k["Status"]),
                created=k["CreateDate"],
            )
            for k in listed.get("AccessKeyMetadata", [])
        ]

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        # No SDK retries here: if a connection drops after IAM created the key, a silent
        # retry would create a second key whose secret we never see. The step's own retry
        # re-runs reconciliation first, which deletes such an orphan.
        with aws_errors("CreateAccessKey", user=user):
            made = (await self._ctx.iam_once.create_access_key(UserName=user))["AccessKey"]
        return SecretEntry(
            kind=self.kind,
            credential_id=made[ACCESS_KEY_ID],
            created_at=made["CreateDate"],
            public={ACCESS_KEY_ID: made[ACCESS_KEY_ID]},
            secret={SECRET_ACCESS_KEY: SecretStr(made[SECRET_ACCESS_KEY])},
        )

    def matches(self, credential: Credential, pending: SecretEntry) -> bool:
        return bool(pending.credential_id) and credential.credential_id == pending.credential_id

    async def verify(self, user: str, entry: SecretEntry) -> None:
        """The new key must answer ``sts:GetCallerIdentity`` as ``user`` from the STS
        endpoint of every ``[verify] regions`` (else the session's region), ``consecutive``
        times in a row in each, within ``attempts x max_delay``. Regions are tried at once."""
        creds = Credentials(
            access_key_id=entry.credential_id, secret_access_key=entry.reveal(SECRET_ACCESS_KEY)
        )
        settings = self._ctx.verify
        deadline = monotonic() + (settings.attempts * settings.max_delay).total_seconds()
        found = await asyncio.gather(
            *(self._answers(region, user, creds, deadline) for region in self._ctx.verify_regions)
        )
        for problem in found:  # a wrong identity anywhere outranks a region still propagating
            if isinstance(problem, WrongIdentity):
                raise problem
        problems = [p for p in found if isinstance(p, str)]
        if problems:
            raise VerificationFailed(entry.credential_id, user, "; ".join(problems))

    async def _answers(
        self, region: str, user: str, creds: Credentials, deadline: float
    ) -> str | WrongIdentity | None:
        """None once the key answered as ``user`` in ``region`` ``consecutive`` times in a
        row; else what went wrong there. A refusal of the key (``InvalidClientTokenId``, any
        other 4xx) resets the run; a transient failure (throttling, 5xx, a dropped
        connection) says nothing about the key and only costs a wait. After ``attempts``
        failures of either sort, or when the next wait would pass ``deadline``, the region
        gives up."""
        settings = self._ctx.verify
        initial = settings.initial_delay.total_seconds()
        waits = delays(initial, settings.max_delay.total_seconds())
        streak = failures = 0
        detail = ""
        while True:
            failed = True
            try:
                arn = await self._caller_arn(creds, region)
            except ClientError as exc:  # not yet valid (eventual consistency): try again
                detail = str(exc.response.get("Error", {}).get("Code", "ClientError"))
                if not isinstance(convert(exc, "GetCallerIdentity", {}), Transient):
                    streak = 0
            except BotoCoreError as exc:
                detail = type(exc).__name__
            else:
                if not is_user_arn(arn, self._ctx.account, user):
                    return WrongIdentity(
                        creds.access_key_id, user, f"authenticated as {arn} in {region}"
                    )
                failed = False
                streak += 1
                if streak >= settings.consecutive:
                    return None
            failures += failed
            if failures >= settings.attempts:
                return f"{region}: {failures} attempts failed (last: {detail})"
            # After a failure, back off; the answers of a run are spaced half the first
            # back-off apart. Only a wait can pass the time limit (``attempts`` and
            # ``consecutive`` bound the calls).
            wait = next(waits) if failed else initial / 2
            if wait > 0 and monotonic() + wait > deadline:
                return (
                    f"{region}: {streak} of {settings.consecutive} answers in a row when "
                    f"the time ran out after {failures} failed attempts (last: {detail or 'none'})"
                )
            await pause(wait)

    async def _caller_arn(self, creds: Credentials, region: str) -> str:
        shared = self._ctx.signed_sts.get(region)
        if shared is not None:  # the session's one client, this call signed with the new key
            with signing_as(creds):
                identity: dict[str, Any] = await shared.get_caller_identity()
        else:
            async with self._ctx.aws.client(
                "sts", region=region, credentials=creds, retries=1
            ) as sts:
                identity = await sts.get_caller_identity()
        return str(identity["Arn"])

    async def set_status(self, user: str, credential_id: str, status: Status) -> None:
        with aws_errors("UpdateAccessKey", user=user, credential_id=credential_id):
            await self._iam.update_access_key(
                UserName=user, AccessKeyId=credential_id, Status=str(status)
            )

    async def delete(self, user: str, credential_id: str) -> None:
        try:
            with aws_errors("DeleteAccessKey", user=user, credential_id=credential_id):
                await self._iam.delete_access_key(UserName=user, AccessKeyId=credential_id)
        except NoSuchEntity:
            return  # already gone

    async def last_used(self, user: str, credential_id: str) -> datetime | None:
        with aws_errors("GetAccessKeyLastUsed", user=user, credential_id=credential_id):
            found = await self._iam.get_access_key_last_used(AccessKeyId=credential_id)
        when = found.get("AccessKeyLastUsed", {}).get("LastUsedDate")
        return when if isinstance(when, datetime) else None

    async def disable(self, user: str, credential_id: str) -> None:
        await self.set_status(user, credential_id, Status.INACTIVE)


REGISTRATION = Registration(
    rule=AccessKeyRule,
    build=AccessKeys,
    iam=IamActions(
        scoped=(
            "iam:ListAccessKeys",
            "iam:CreateAccessKey",
            "iam:UpdateAccessKey",
            "iam:DeleteAccessKey",
            "iam:GetAccessKeyLastUsed",
            "iam:GetUser",
        )
    ),
)
