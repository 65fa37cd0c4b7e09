"""Service-specific credentials: CodeCommit HTTPS Git passwords, Amazon Keyspaces
(for Apache Cassandra) passwords and Amazon Bedrock long-term API keys. Two per service per
user; the rule's ``service`` is the slot.

IAM makes the password (or API key) and returns it once, from
``CreateServiceSpecificCredential``: like an access key's secret it is stored pending at
once, before anything else, and the create call is made without SDK retries (a silent
retry would make a second credential whose password is lost; reconciliation deletes such
an orphan). ``verify`` checks the new credential is listed Active (its password can only
be tried by the service itself). IAM does not record when a service-specific credential
was used, so deactivation is never held.

Bedrock API keys take ``CredentialAgeDays`` (the rule's ``credential_age``, 1-36600 as IAM
bounds it) and expire on their own: IAM lists them with an ``ExpirationDate`` and, once
past it, the status ``Expired``. A rotation starts ``renew_before`` the expiry; a rule with
``delete_expired`` has expired ones deleted (a ``disable`` decision: an expired key can
never work again, and it holds one of the service's two places).

moto does not implement these calls: they are tested against ``rotator.testing.MemoryIam``.

Declares the kind once: ``ServiceCredentialRule`` (options, and the facts as ``facts``),
``ServiceCredentials`` (the IAM calls) and ``REGISTRATION``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, model_validator

from rotator.aws import aws_errors
from rotator.errors import NoSuchEntity, Refused, VerificationFailed
from rotator.kinds.base import IamActions, KindContext, Registration
from rotator.model import Credential, Kind, KindFacts, Shape, Status
from rotator.policy import Duration, Rule, format_duration
from rotator.sinks.base import SecretEntry

CREDENTIAL_ID = "ServiceSpecificCredentialId"
SERVICE = "ServiceName"
SERVICE_USER = "ServiceUserName"
PASSWORD = "ServicePassword"  # noqa: S105 (a field name, not a secret)
SECRET = "Secret"  # noqa: S105 (Bedrock-style credentials return ServiceCredentialSecret)


CODECOMMIT = "codecommit.amazonaws.com"
KEYSPACES = "cassandra.amazonaws.com"
BEDROCK = "bedrock.amazonaws.com"
SERVICES = (CODECOMMIT, KEYSPACES, BEDROCK)  # the services IAM makes credentials for
MAX_CREDENTIAL_AGE_DAYS = 36600  # IAM's bound on CredentialAgeDays
RENEW_BEFORE = timedelta(days=7)  # default, at most a quarter of credential_age
ALIAS = "ServiceCredentialAlias"  # a Bedrock API key's name (no ServiceUserName)
EXPIRES = "ExpirationDate"


class ServiceCredentialRule(Rule):
    """``kind = "service-credential"``: one service's credentials (CodeCommit, Keyspaces,
    Bedrock API keys)."""

    facts: ClassVar[KindFacts] = KindFacts(
        kind=Kind.SERVICE_CREDENTIAL, shape=Shape.TWO_SLOT, noun="service credential", limit=2
    )
    kind: Literal[Kind.SERVICE_CREDENTIAL]
    service: Literal["codecommit.amazonaws.com", "cassandra.amazonaws.com", "bedrock.amazonaws.com"]
    # Bedrock API keys only: the lifetime of a new key in days (IAM's CredentialAgeDays);
    # unset: the key does not expire.
    credential_age: int | None = Field(default=None, ge=1, le=MAX_CREDENTIAL_AGE_DAYS)
    # Rotate this long before a key expires (default: 7d, at most a quarter of its age).
    renew_before: Duration | None = None
    # Delete credentials IAM lists as Expired (a disable decision; opt-in).
    delete_expired: bool = False

    @model_validator(mode="after")
    def _bedrock_only(self) -> ServiceCredentialRule:
        if self.credential_age is not None and self.service != BEDROCK:
            raise ValueError(
                f"credential_age: only Bedrock API keys ({BEDROCK}) take a lifetime, "
                f"not {self.service}"
            )
        age = self.lifetime
        if age is not None and self.renew_before is not None and self.renew_before >= age:
            raise ValueError(
                f"renew_before {format_duration(self.renew_before)} must be shorter than "
                f"credential_age ({self.credential_age} days): every key would be due at birth"
            )
        return self

    @property
    def slot(self) -> str:
        return self.service

    @property
    def lifetime(self) -> timedelta | None:
        """``credential_age`` as a duration (None: keys that do not expire)."""
        return None if self.credential_age is None else timedelta(days=self.credential_age)

    @property
    def renew_window(self) -> timedelta | None:
        if self.renew_before is not None:
            return self.renew_before
        age = self.lifetime
        return RENEW_BEFORE if age is None else min(RENEW_BEFORE, age / 4)

    @property
    def cleans_expired(self) -> bool:
        return self.delete_expired


class ServiceCredentials:
    """The IAM calls of ``kind = "service-credential"`` (IAM makes the secret)."""

    kind = Kind.SERVICE_CREDENTIAL

    def __init__(self, ctx: KindContext) -> None:
        self._ctx = ctx
        self._iam = ctx.iam

    async def _listed(self, user: str, service: str) -> list[dict[str, Any]]:
        kwargs = {"UserName": user, **({"ServiceName": service} if service else {})}
        with aws_errors("ListServiceSpecificCredentials", user=user, service=service):
            found = await self._iam.list_service_specific_credentials(**kwargs)
        return list(found.get("ServiceSpecificCredentials", []))

    async def list(self, user: str, slot: str = "") -> list[Credential]:
        return [
            Credential(
                kind=self.kind,
                credential_id=c[CREDENTIAL_ID],
                status=Status(c["Status"]),
                created=c["CreateDate"],
                expires=_when(c.get(EXPIRES)),
                slot=c[SERVICE],
            )
            for c in await self._listed(user, slot)
        ]

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        return await self._create(user, slot, None)

    async def create_for(
        self, rule: ServiceCredentialRule, user: str, slot: str = ""
    ) -> SecretEntry:
        return await self._create(user, slot or rule.service, rule.credential_age)

    async def _create(self, user: str, slot: str, age_days: int | None) -> SecretEntry:
        if not slot:
            raise Refused(f"a service credential of {user} needs the rule's service")
        kwargs: dict[str, Any] = {"UserName": user, "ServiceName": slot}
        if age_days is not None:
            kwargs["CredentialAgeDays"] = age_days
        with aws_errors("CreateServiceSpecificCredential", user=user, service=slot):
            made = (await self._ctx.iam_once.create_service_specific_credential(**kwargs))[
                "ServiceSpecificCredential"
            ]
        secret = {PASSWORD: SecretStr(made[PASSWORD])} if made.get(PASSWORD) else {}
        if made.get("ServiceCredentialSecret"):
            secret[SECRET] = SecretStr(made["ServiceCredentialSecret"])
        public = {
            CREDENTIAL_ID: made[CREDENTIAL_ID],
            SERVICE: made[SERVICE],
            SERVICE_USER: made.get(SERVICE_USER, ""),
        }
        if made.get(ALIAS):
            public[ALIAS] = made[ALIAS]
        expires = _when(made.get(EXPIRES))
        if expires is not None:
            public[EXPIRES] = expires.isoformat()
        return SecretEntry(
            kind=self.kind,
            credential_id=made[CREDENTIAL_ID],
            created_at=made["CreateDate"],
            public=public,
            secret=secret,
        )

    def matches(self, credential: Credential, pending: SecretEntry) -> bool:
        return bool(pending.credential_id) and credential.credential_id == pending.credential_id

    async def verify(self, user: str, entry: SecretEntry) -> None:
        service = entry.public.get(SERVICE, "")
        listed = {c.credential_id: c for c in await self.list(user, service)}
        found = listed.get(entry.credential_id)
        if found is None:
            raise VerificationFailed(entry.credential_id, user, f"not listed for {service}")
        if not found.active:
            raise VerificationFailed(entry.credential_id, user, f"status is {found.status}")

    async def set_status(self, user: str, credential_id: str, status: Status) -> None:
        with aws_errors("UpdateServiceSpecificCredential", user=user, credential_id=credential_id):
            await self._iam.update_service_specific_credential(
                UserName=user, ServiceSpecificCredentialId=credential_id, Status=str(status)
            )

    async def delete(self, user: str, credential_id: str) -> None:
        try:
            with aws_errors(
                "DeleteServiceSpecificCredential", user=user, credential_id=credential_id
            ):
                await self._iam.delete_service_specific_credential(
                    UserName=user, ServiceSpecificCredentialId=credential_id
                )
        except NoSuchEntity:
            return  # already gone

    async def disable(self, user: str, credential_id: str) -> None:
        """An expired credential is deleted (it can never work again and holds one of the
        service's two places); any other is made Inactive. Idempotent."""
        found = next((c for c in await self.list(user) if c.credential_id == credential_id), None)
        if found is None:
            return
        if found.status is Status.EXPIRED:
            await self.delete(user, credential_id)
        elif found.active:
            await self.set_status(user, credential_id, Status.INACTIVE)


def _when(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


REGISTRATION = Registration(
    rule=ServiceCredentialRule,
    build=ServiceCredentials,
    iam=IamActions(
        scoped=(
            "iam:ListServiceSpecificCredentials",
            "iam:CreateServiceSpecificCredential",
            "iam:UpdateServiceSpecificCredential",
            "iam:DeleteServiceSpecificCredential",
        )
    ),
)
