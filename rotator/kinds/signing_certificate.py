"""Signing certificates: two per user; rotator makes the key pair and the X.509 itself.

The new private key and certificate are stored in the sink as *pending* before
``UploadSigningCertificate`` is called, so a crash can never lose the key: a resumed
rotation uploads the same material again, or adopts the upload it finds (recognised by the
certificate's fingerprint). Verification reads the user's certificates back: the new one
must be listed Active with the same body, and the stored private key must match it.
IAM does not record when a signing certificate was last used, so deactivation is never
held for use.

Declares the kind once: ``SigningCertificateRule`` (options, and the facts as ``facts``),
``SigningCertificates`` (the IAM calls) and ``REGISTRATION``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from rotator import crypto, crypto_checks, issuers
from rotator.aws import all_pages, aws_errors
from rotator.backoff import delays, pause
from rotator.errors import InputError, NoSuchEntity, VerificationFailed, WrongIdentity
from rotator.issuers import KeySpec
from rotator.kinds.base import IamActions, KindContext, Registration
from rotator.kinds.certificate_common import (
    FINGERPRINT,
    NOT_AFTER,
    MaterialMatching,
    certificate_errors,
    entry_fingerprint,
    key_pair_problem,
    read_body,
)
from rotator.model import Credential, Kind, KindFacts, Shape, Status, utcnow
from rotator.policy import Duration, Rule
from rotator.sinks.base import SecretEntry

CERTIFICATE_ID = "CertificateId"


class SigningCertificateRule(Rule):
    """``kind = "signing-certificate"``: rotator makes the key pair and the X.509 itself."""

    facts: ClassVar[KindFacts] = KindFacts(
        kind=Kind.SIGNING_CERTIFICATE, shape=Shape.TWO_SLOT, noun="signing certificate", limit=2
    )
    kind: Literal[Kind.SIGNING_CERTIFICATE]
    key: KeySpec = Field(default_factory=KeySpec)
    subject: str = "CN={user}"
    validity: Duration = timedelta(days=365)
    renew_before: Duration = timedelta(days=30)

    @property
    def renew_window(self) -> timedelta | None:
        return self.renew_before

    def input_problems(self, now: datetime, *, files: bool = True) -> list[str]:
        sample = issuers.SAMPLE
        return issuers.template_problems("subject", self.subject, user=sample, name=sample)


def new_material(rule: SigningCertificateRule, user: str, now: datetime) -> SecretEntry:
    """A new key pair and self-signed certificate for ``user`` as the rule describes, checked
    as IAM would check it; the entry has no credential ID yet. Raises ``InputError``."""
    key = crypto.generate_key(rule.key.type, rule.key.size)
    try:
        subject = crypto.subject_name(rule.subject, user=user, name=user)
    except ValueError as exc:
        raise InputError(f"rule {rule.name!r}: subject: {exc}") from None
    cert = crypto.self_signed(key, subject, now, rule.validity)
    body, key_pem = crypto.certificate_pem(cert), crypto.private_key_pem(key)
    names = ("new signing certificate", "its private key", "chain")
    problems = crypto_checks.material_problems(body, key_pem, None, now, names=names)
    if problems:
        raise InputError(f"rule {rule.name!r}: " + "; ".join(problems))
    return SecretEntry(
        kind=Kind.SIGNING_CERTIFICATE,
        credential_id="",
        created_at=now,
        public={
            crypto.CERTIFICATE_BODY: body,
            FINGERPRINT: crypto.fingerprint(cert),
            NOT_AFTER: cert.not_valid_after_utc.isoformat(),
        },
        secret={crypto.PRIVATE_KEY: SecretStr(key_pem)},
    )


class SigningCertificates(MaterialMatching):
    """The IAM calls of ``kind = "signing-certificate"``; makes its material."""

    kind = Kind.SIGNING_CERTIFICATE

    def __init__(self, ctx: KindContext) -> None:
        self._ctx = ctx
        self._iam = ctx.iam
        super().__init__()  # _fingerprints: CertificateId -> fingerprint, latest listing

    async def _listed(self, user: str) -> list[dict[str, Any]]:
        return await all_pages(
            self._iam.list_signing_certificates,
            "Certificates",
            "ListSigningCertificates",
            {"user": user},
            UserName=user,
        )

    async def list(self, user: str, slot: str = "") -> list[Credential]:
        found = []
        for cert in await self._listed(user):
            info = read_body(str(cert.get("CertificateBody", "")))
            if info is not None:
                self._fingerprints[cert[CERTIFICATE_ID]] = info.fingerprint
            found.append(
                Credential(
                    kind=self.kind,
                    credential_id=cert[CERTIFICATE_ID],
                    status=Status(cert["Status"]),
                    created=cert["UploadDate"],
                    expires=info.not_after if info else None,
                    not_before=info.not_before if info else None,
                )
            )
        return found

    async def make_material(self, rule: SigningCertificateRule, user: str) -> SecretEntry:
        return await asyncio.to_thread(new_material, rule, user, utcnow())

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        if material is None:
            raise InputError(f"no certificate material to upload for {user}")
        # No SDK retry: after a dropped connection the step's own retry reconciles first,
        # and adopts the upload by its fingerprint if IAM applied it.
        with certificate_errors("UploadSigningCertificate", user=user):
            made = await self._ctx.iam_once.upload_signing_certificate(
                UserName=user, CertificateBody=material.public[crypto.CERTIFICATE_BODY]
            )
        return material.with_id(made["Certificate"][CERTIFICATE_ID])

    async def verify(self, user: str, entry: SecretEntry) -> None:
        problem = key_pair_problem(entry)
        if problem is not None:
            raise WrongIdentity(entry.credential_id, user, problem)
        settings = self._ctx.verify
        waits = delays(settings.initial_delay.total_seconds(), settings.max_delay.total_seconds())
        detail = "not listed"
        for attempt in range(settings.attempts):
            if attempt:
                await pause(next(waits))
            listed = {c[CERTIFICATE_ID]: c for c in await self._listed(user)}
            cert = listed.get(entry.credential_id)
            if cert is None:
                continue  # IAM is eventually consistent
            info = read_body(str(cert.get("CertificateBody", "")))
            if info is None or info.fingerprint != entry_fingerprint(entry):
                raise WrongIdentity(
                    entry.credential_id, user, "IAM holds a different certificate under this ID"
                )
            if cert["Status"] == Status.ACTIVE:
                return
            detail = f"listed {cert['Status']}"
        raise VerificationFailed(
            entry.credential_id, user, f"{settings.attempts} attempts: {detail}"
        )

    async def set_status(self, user: str, credential_id: str, status: Status) -> None:
        with aws_errors("UpdateSigningCertificate", user=user, credential_id=credential_id):
            await self._iam.update_signing_certificate(
                UserName=user, CertificateId=credential_id, Status=str(status)
            )

    async def delete(self, user: str, credential_id: str) -> None:
        try:
            with aws_errors("DeleteSigningCertificate", user=user, credential_id=credential_id):
                await self._iam.delete_signing_certificate(
                    UserName=user, CertificateId=credential_id
                )
        except NoSuchEntity:
            return  # already gone


REGISTRATION = Registration(
    rule=SigningCertificateRule,
    build=SigningCertificates,
    iam=IamActions(
        scoped=(
            "iam:ListSigningCertificates",
            "iam:UploadSigningCertificate",
            "iam:UpdateSigningCertificate",
            "iam:DeleteSigningCertificate",
        )
    ),
)
