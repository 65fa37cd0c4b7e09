"""Server certificates: held by the account, renewed as new *versions* of a base name.

A rule selects certificates by base name (``select.names`` globs) and path
(``select.path_prefix``). The versions of base ``web`` are ``web`` itself and the names
``name_format`` makes of it (``web-20260301``, a second one that day ``web-20260301-2``).
The holder's name — the "user" of the engine, the journal and ``{name}``/``{user}`` in a
sink template — is the base name; a credential's ID is its ``ServerCertificateName``.

Expiry and notBefore come from the PEM body ``GetServerCertificate`` returns, never from
metadata. Server certificates have no status: the newest version (by notBefore) is reported
Active and the older ones Inactive, so the engine's deactivate step finds the old version
"already inactive" and deletes it ``retire_after`` later; ``set_status`` does nothing. A
``DeleteConflict`` (still attached to a load balancer) holds that delete with IAM's reason.

Names follow the rules' ``name_format``: this kind learns the rules when the inventory calls
``account_holders`` (every sweep does, before any step) or ``make_material``; without them
it assumes the default ``{base}-{date}``.

Declares the kind once: ``ServerCertificateRule`` (options, and the facts as ``facts``),
``ServerCertificates`` (the IAM calls) and ``REGISTRATION``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from rotator import crypto, issuers
from rotator.aws import all_pages, aws_errors
from rotator.backoff import delays, pause
from rotator.errors import InputError, NoSuchEntity, Refused, VerificationFailed, WrongIdentity
from rotator.issuers import DirectoryIssuer, Issuer
from rotator.kinds.base import IamActions, KindContext, Registration
from rotator.kinds.certificate_common import (
    FINGERPRINT,
    NOT_AFTER,
    BodyInfo,
    MaterialMatching,
    certificate_errors,
    entry_fingerprint,
    key_pair_problem,
    read_body,
)
from rotator.kinds.certificate_versions import (
    DEFAULT_FORMAT,
    Version,
    base_of,
    credentials,
    newest,
    version_name,
)
from rotator.model import Credential, Holder, Kind, KindFacts, Shape, Status, utcnow
from rotator.policy import Duration, Rule
from rotator.sinks.base import SecretEntry

PATH = "Path"  # where the new version goes (the current version's path); the name is the ID


class ServerCertificateRule(Rule):
    """``kind = "server-certificate"``: per account, selected by name glob and path."""

    facts: ClassVar[KindFacts] = KindFacts(
        kind=Kind.SERVER_CERTIFICATE,
        shape=Shape.VERSIONED,
        noun="server certificate",
        account_held=True,
    )
    kind: Literal[Kind.SERVER_CERTIFICATE]
    max_age: Duration | None = None  # renewal is driven by expiry unless set
    issuer: Issuer
    renew_before: Duration = timedelta(days=30)
    retire_after: Duration = timedelta(days=7)
    name_format: str = "{base}-{date}"

    @model_validator(mode="after")
    def _names(self) -> ServerCertificateRule:
        if "{base}" not in self.name_format or "{date}" not in self.name_format:
            raise ValueError("name_format must contain {base} and {date}")
        if self.select.users != ["*"] or self.select.tags:
            raise ValueError("server certificates are selected by select.names and path_prefix")
        return self

    @property
    def renew_window(self) -> timedelta | None:
        return self.renew_before

    def timings(self) -> tuple[timedelta, timedelta]:
        return timedelta(0), self.retire_after  # server certificates have no status

    def input_problems(self, now: datetime, *, files: bool = True) -> list[str]:
        return issuers.name_format_problems(self.name_format) + issuers.issuer_problems(
            self.issuer, now, files=files
        )


class ServerCertificates(MaterialMatching):
    """The IAM calls of ``kind = "server-certificate"``; held by the account, makes its
    material."""

    kind = Kind.SERVER_CERTIFICATE

    def __init__(self, ctx: KindContext) -> None:
        self._ctx = ctx
        self._iam = ctx.iam
        self._rules: list[ServerCertificateRule] = []
        super().__init__()  # _fingerprints: name -> fingerprint, latest listing

    # -- reading IAM ------------------------------------------------------------------------

    async def _metadata(self, path_prefix: str = "/") -> list[dict[str, Any]]:
        found = await all_pages(
            self._iam.list_server_certificates,
            "ServerCertificateMetadataList",
            "ListServerCertificates",
            {"path_prefix": path_prefix},
            PathPrefix=path_prefix,
        )
        return [m for m in found if str(m.get("Path", "/")).startswith(path_prefix)]

    async def _get(self, name: str) -> BodyInfo | None:
        """The dates and fingerprint of ``name``'s body; ``NoSuchEntity`` if it is gone."""
        with aws_errors("GetServerCertificate", name=name):
            got = await self._iam.get_server_certificate(ServerCertificateName=name)
        info = read_body(str(got["ServerCertificate"].get("CertificateBody", "")))
        if info is not None:
            self._fingerprints[name] = info.fingerprint
        return info

    async def _version(self, meta: dict[str, Any]) -> Version | None:
        name = meta["ServerCertificateName"]
        try:
            info = await self._get(name)
        except NoSuchEntity:
            return None  # deleted since it was listed
        return Version(
            name=name,
            path=str(meta.get("Path", "/")),
            arn=str(meta.get("Arn", "")),
            uploaded=meta["UploadDate"],
            info=info,
        )

    def _rule_for(self, base: str) -> ServerCertificateRule | None:
        """The first known rule whose name globs select ``base``."""
        return next(
            (r for r in self._rules if r.select.matches(base, r.select.path_prefix, {})), None
        )

    def _belongs(self, name: str, base: str) -> bool:
        formats = {r.name_format for r in self._rules} or {DEFAULT_FORMAT}
        return name == base or any(base_of(name, f) == base for f in formats)

    async def _versions(self, base: str) -> list[Version]:
        """The versions of ``base`` under its rule's path prefix (only those are read)."""
        rule = self._rule_for(base)
        listed = await self._metadata(rule.select.path_prefix if rule else "/")
        metas = [m for m in listed if self._belongs(m["ServerCertificateName"], base)]
        found = [await self._version(m) for m in metas]
        return [v for v in found if v is not None]

    async def list(self, user: str, slot: str = "") -> list[Credential]:
        return credentials(await self._versions(user))

    async def account_holders(self, account: str, rules: Sequence[Rule]) -> Sequence[Holder]:
        self._rules = [r for r in rules if isinstance(r, ServerCertificateRule) and r.enabled]
        prefixes = sorted({r.select.path_prefix for r in self._rules})
        prefixes = [p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes)]
        metas: dict[str, dict[str, Any]] = {}
        for prefix in prefixes:
            metas.update({m["ServerCertificateName"]: m for m in await self._metadata(prefix)})
        groups: dict[str, tuple[ServerCertificateRule, list[dict[str, Any]]]] = {}
        for name, meta in sorted(metas.items()):
            for rule in self._rules:
                base = base_of(name, rule.name_format)
                if rule.select.matches(base, str(meta.get("Path", "/")), {}):
                    groups.setdefault(base, (rule, []))[1].append(meta)
                    break
        holders = []
        for base, (rule, members) in groups.items():
            versions = [v for v in [await self._version(m) for m in members] if v is not None]
            current = newest(versions)
            if current is None:
                continue
            holders.append(
                Holder(
                    account=account,
                    name=base,
                    arn=current.arn,
                    path=current.path,
                    credentials=tuple(credentials(versions)),
                    offered=await asyncio.to_thread(issuers.offered, rule),
                    account_held=True,
                )
            )
        return holders

    # -- the rotation -----------------------------------------------------------------------

    async def make_material(self, rule: ServerCertificateRule, user: str) -> SecretEntry:
        if rule not in self._rules:
            self._rules.append(rule)
        current = newest(await self._versions(user))
        now = utcnow()
        material = await asyncio.to_thread(issuers.issue, rule, user, now)
        if isinstance(rule.issuer, DirectoryIssuer) and current is not None:
            same = current.info is not None and current.info.fingerprint == material.fingerprint
            if same or material.not_before <= current.issued:
                raise Refused(
                    f"{material.source} (issued {material.not_before:%Y-%m-%d %H:%M}Z) is not "
                    f"newer than {current.name} in IAM (issued {current.issued:%Y-%m-%d %H:%M}Z)"
                    ": renew it with the ACME client first"
                )
        public = {
            PATH: current.path if current else rule.select.path_prefix,
            crypto.CERTIFICATE_BODY: material.certificate,
            FINGERPRINT: material.fingerprint,
            NOT_AFTER: material.not_after.isoformat(),
        }
        if material.chain:
            public[crypto.CERTIFICATE_CHAIN] = material.chain
        return SecretEntry(
            kind=self.kind,
            credential_id="",
            created_at=now,
            public=public,
            secret={crypto.PRIVATE_KEY: material.private_key},
        )

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        if material is None:
            raise InputError(f"no certificate material to upload for {user}")
        taken = {m["ServerCertificateName"] for m in await self._metadata()}
        rule = self._rule_for(user)
        name_format = rule.name_format if rule else DEFAULT_FORMAT
        name = version_name(name_format, user, utcnow().date(), taken)
        upload = {
            "ServerCertificateName": name,
            "Path": material.public.get(PATH, "/"),
            "CertificateBody": material.public[crypto.CERTIFICATE_BODY],
            "PrivateKey": material.reveal(crypto.PRIVATE_KEY),
        }
        if material.public.get(crypto.CERTIFICATE_CHAIN):
            upload["CertificateChain"] = material.public[crypto.CERTIFICATE_CHAIN]
        # No SDK retry: after a dropped connection the step's own retry reconciles first,
        # and adopts the upload by its fingerprint if IAM applied it.
        with certificate_errors("UploadServerCertificate", name=name):
            await self._ctx.iam_once.upload_server_certificate(**upload)
        return SecretEntry(
            kind=self.kind,
            credential_id=name,
            created_at=material.created_at,
            public=material.public,
            secret=material.secret,
        )

    async def verify(self, user: str, entry: SecretEntry) -> None:
        problem = key_pair_problem(entry)
        if problem is not None:
            raise WrongIdentity(entry.credential_id, user, problem)
        settings = self._ctx.verify
        waits = delays(settings.initial_delay.total_seconds(), settings.max_delay.total_seconds())
        for attempt in range(settings.attempts):
            if attempt:
                await pause(next(waits))
            try:
                info = await self._get(entry.credential_id)
            except NoSuchEntity:
                continue  # IAM is eventually consistent
            if info is None or info.fingerprint != entry_fingerprint(entry):
                raise WrongIdentity(
                    entry.credential_id, user, "IAM holds a different certificate under this name"
                )
            return
        raise VerificationFailed(
            entry.credential_id, user, f"{settings.attempts} attempts: not found in IAM"
        )

    async def set_status(self, user: str, credential_id: str, status: Status) -> None:
        return  # server certificates have no status

    async def delete(self, user: str, credential_id: str) -> None:
        try:
            with aws_errors("DeleteServerCertificate", name=credential_id):
                await self._iam.delete_server_certificate(ServerCertificateName=credential_id)
        except NoSuchEntity:
            return  # already gone


REGISTRATION = Registration(
    rule=ServerCertificateRule,
    build=ServerCertificates,
    iam=IamActions(
        scoped=(
            "iam:GetServerCertificate",
            "iam:UploadServerCertificate",
            "iam:DeleteServerCertificate",
        ),
        unscoped=("iam:ListServerCertificates",),
        resource="server-certificate",
    ),
)
