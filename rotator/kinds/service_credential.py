"""Service-specific credentials (CodeCommit HTTPS Git, Amazon Keyspaces): two per service
per user; the rule's ``service`` is the slot.

IAM makes the password and returns it once, from ``CreateServiceSpecificCredential``: like
an access key's secret it is stored pending at once, before anything else, and the create
call is made without SDK retries (a silent retry would make a second credential whose
password is lost; reconciliation deletes such an orphan). ``verify`` checks the new
credential is listed Active (its password can only be tried by the service itself). IAM
does not record when a service-specific credential was used, so deactivation is never held.

moto does not implement these calls: they are tested against ``rotator.testing.MemoryIam``.

Declares the kind once: ``ServiceCredentialRule`` (options, and the facts as ``facts``),
``ServiceCredentials`` (the IAM calls) and ``REGISTRATION``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from rotator.aws import aws_errors
from rotator.errors import NoSuchEntity, Refused, VerificationFailed
from rotator.kinds.base import IamActions, KindContext, Registration
from rotator.model import Credential, Kind, KindFacts, Shape, Status
from rotator.policy import Rule
from rotator.sinks.base import SecretEntry

CREDENTIAL_ID = "ServiceSpecificCredentialId"
SERVICE = "ServiceName"
SERVICE_USER = "ServiceUserName"
PASSWORD = "ServicePassword"  # noqa: S105 (a field name, not a secret)
SECRET = "Secret"  # noqa: S105 (Bedrock-style credentials return ServiceCredentialSecret)


class ServiceCredentialRule(Rule):
    """``kind = "service-credential"``: one service's credentials (CodeCommit, Keyspaces)."""

    facts: ClassVar[KindFacts] = KindFacts(
        kind=Kind.SERVICE_CREDENTIAL, shape=Shape.TWO_SLOT, noun="service credential", limit=2
    )
    kind: Literal[Kind.SERVICE_CREDENTIAL]
    service: str = Field(pattern=r"^[a-z0-9.-]+\.amazonaws\.com$")

    @property
    def slot(self) -> str:
        return self.service


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
                slot=c[SERVICE],
            )
            for c in await self._listed(user, slot)
        ]

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        if not slot:
            raise Refused(f"a service credential of {user} needs the rule's service")
        with aws_errors("CreateServiceSpecificCredential", user=user, service=slot):
            made = (
                await self._ctx.iam_once.create_service_specific_credential(
                    UserName=user, ServiceName=slot
                )
            )["ServiceSpecificCredential"]
        secret = {PASSWORD: SecretStr(made[PASSWORD])} if made.get(PASSWORD) else {}
        if made.get("ServiceCredentialSecret"):
            secret[SECRET] = SecretStr(made["ServiceCredentialSecret"])
        return SecretEntry(
            kind=self.kind,
            credential_id=made[CREDENTIAL_ID],
            created_at=made["CreateDate"],
            public={
                CREDENTIAL_ID: made[CREDENTIAL_ID],
                SERVICE: made[SERVICE],
                SERVICE_USER: made.get(SERVICE_USER, ""),
            },
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
