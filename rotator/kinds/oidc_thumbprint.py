"""OIDC identity provider thumbprints: held by the account, one thumbprint list per provider.

A rule selects providers by URL (``select.names`` globs on the URL as IAM holds it, without
``https://``) and by tag (``select.tags``). The holder's name — the "user" of the engine,
the journal and ``{name}``/``{user}`` in a sink template — is that URL; a credential is one
thumbprint of the provider's list (its ID is the lower-case hex thumbprint).

For each provider the kind fetches ``https://<url>/.well-known/openid-configuration``, then
the TLS chain of the ``jwks_uri`` host, verified against the system trust store or the
rule's ``ca_bundle`` (``oidc_chain``); the thumbprint IAM needs is that of the chain's top
intermediate CA. What the kind found is the holder's ``finding``: a thumbprint missing from
the list is due now (ROTATE); a chain that does not verify is BLOCKED — never added.

Thumbprints have no status in IAM; this kind reports the one the provider serves Active and
the others Inactive (when the served one is missing, the last one added stands in for it
until the new one is added; when the chain cannot be verified, all are Active: nothing is
retired on a guess). So a rotation adds the served thumbprint (the create step), checks
IAM lists it (verify), records it in the sink (promote: the thumbprints are public), finds
the replaced one "already inactive" and removes it ``retire_after`` later, if it still
matches no chain served. IAM keeps no date per thumbprint: their order in the list (rotator
appends) orders them, from the provider's CreateDate. At IAM's limit of five, the create
step drops the oldest thumbprint that matches no chain served; if all five match, it fails
with ``LimitExceeded``.

Declares the kind once: ``OidcThumbprintRule``, ``OidcThumbprints`` and ``REGISTRATION``.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from rotator.aws import aws_errors
from rotator.backoff import delays, pause
from rotator.errors import (
    InputError,
    LimitExceeded,
    NoSuchEntity,
    Refused,
    VerificationFailed,
)
from rotator.kinds import oidc_chain
from rotator.kinds.base import IamActions, KindContext, Registration
from rotator.kinds.oidc_chain import Served
from rotator.model import (
    Action,
    Credential,
    Finding,
    Holder,
    Kind,
    KindFacts,
    Shape,
    Status,
    utcnow,
)
from rotator.policy import Duration, Rule
from rotator.sinks.base import SecretEntry

MAX_THUMBPRINTS = 5  # IAM's limit per provider
FETCH_CONCURRENCY = 8  # providers read (IAM, then their HTTPS chains) at once
THUMBPRINT = "Thumbprint"  # the sink entry's fields (all public)
SUBJECT = "CertificateSubject"
JWKS_HOST = "JwksHost"


class OidcThumbprintRule(Rule):
    """``kind = "oidc-thumbprint"``: per account, providers selected by URL glob and tag."""

    facts: ClassVar[KindFacts] = KindFacts(
        kind=Kind.OIDC_THUMBPRINT,
        shape=Shape.VERSIONED,
        noun="thumbprint",
        account_held=True,
    )
    kind: Literal[Kind.OIDC_THUMBPRINT]
    max_age: Duration | None = None  # driven by the chain the provider serves
    retire_after: Duration = timedelta(days=7)
    ca_bundle: Path | None = None  # PEM CAs to verify chains with (default: the system's)
    fetch_timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _selection(self) -> OidcThumbprintRule:
        if self.select.users != ["*"] or self.select.path_prefix != "/":
            raise ValueError("OIDC providers are selected by select.names (URL globs) and tags")
        if self.fetch_timeout <= timedelta(0):
            raise ValueError("fetch_timeout must be positive")
        return self

    def timings(self) -> tuple[timedelta, timedelta]:
        return timedelta(0), self.retire_after  # thumbprints have no status

    def input_problems(self, now: datetime, *, files: bool = True) -> list[str]:
        if self.ca_bundle is None or not files:
            return []
        try:
            oidc_chain.context(self.ca_bundle)
        except (OSError, ValueError) as exc:
            return [f"ca_bundle: {self.ca_bundle} cannot be read as PEM CA certificates ({exc})"]
        return []


def _arn_url(arn: str) -> str:
    return arn.split(":oidc-provider/", 1)[-1]


class OidcThumbprints:
    """The IAM calls of ``kind = "oidc-thumbprint"``; held by the account, makes its
    material (the thumbprint of what the provider serves)."""

    kind = Kind.OIDC_THUMBPRINT

    def __init__(self, ctx: KindContext) -> None:
        self._ctx = ctx
        self._iam = ctx.iam
        self._rules: list[OidcThumbprintRule] = []
        self._served: dict[str, Served] = {}  # by URL, for this sweep
        self._arns: dict[str, str] = {}  # URL -> ARN

    # -- reading IAM and the provider ---------------------------------------------------

    async def _list_arns(self) -> dict[str, str]:
        with aws_errors("ListOpenIDConnectProviders"):
            got = await self._iam.list_open_id_connect_providers()
        arns = [str(p["Arn"]) for p in got.get("OpenIDConnectProviderList", [])]
        self._arns = {_arn_url(a): a for a in arns}
        return self._arns

    async def _arn(self, url: str) -> str:
        if url not in self._arns:
            await self._list_arns()
        if url not in self._arns:
            raise NoSuchEntity("GetOpenIDConnectProvider", "NoSuchEntity", f"no provider {url}")
        return self._arns[url]

    async def _provider(self, url: str) -> dict[str, Any]:
        arn = await self._arn(url)
        with aws_errors("GetOpenIDConnectProvider", name=url):
            got: dict[str, Any] = await self._iam.get_open_id_connect_provider(
                OpenIDConnectProviderArn=arn
            )
        return got

    def _rule_for(self, url: str, tags: dict[str, str] | None = None) -> OidcThumbprintRule | None:
        """The first known rule selecting ``url`` (by its URL globs alone if no tags)."""
        for rule in self._rules:
            if tags is None and any(fnmatch.fnmatchcase(url, p) for p in rule.select.patterns):
                return rule
            if tags is not None and rule.select.matches(url, "/", tags):
                return rule
        return None

    async def served(self, url: str, rule: OidcThumbprintRule | None = None) -> Served:
        """What ``url`` serves now (fetched once per sweep)."""
        if url not in self._served:
            rule = rule or self._rule_for(url)
            self._served[url] = await oidc_chain.fetch(
                url,
                ca_bundle=rule.ca_bundle if rule else None,
                seconds=(rule.fetch_timeout if rule else timedelta(seconds=10)).total_seconds(),
            )
        return self._served[url]

    def _credentials(self, provider: dict[str, Any], served: Served | None) -> list[Credential]:
        listed = [str(t).lower() for t in provider.get("ThumbprintList", [])]
        created: datetime = provider.get("CreateDate") or utcnow()
        if served is None or served.thumbprint is None:
            in_service = set(listed)  # cannot judge: all stay
        elif served.thumbprint in listed:
            in_service = {served.thumbprint}
        else:
            in_service = set(listed[-1:])  # what IAM trusts until the served one is added
        return [
            Credential(
                kind=self.kind,
                credential_id=t,
                status=Status.ACTIVE if t in in_service else Status.INACTIVE,
                created=created + timedelta(microseconds=i),
            )
            for i, t in enumerate(listed)
        ]

    async def list(self, user: str, slot: str = "") -> list[Credential]:
        provider = await self._provider(user)
        return self._credentials(provider, await self.served(user))

    async def account_holders(self, account: str, rules: Sequence[Rule]) -> Sequence[Holder]:
        self._rules = [r for r in rules if isinstance(r, OidcThumbprintRule) and r.enabled]
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(url: str, arn: str) -> Holder | None:
            async with limit:
                try:
                    provider = await self._provider(url)
                except NoSuchEntity:
                    return None  # deleted since it was listed
                tags = {str(t["Key"]): str(t["Value"]) for t in provider.get("Tags", [])}
                rule = self._rule_for(url, tags)
                if rule is None:
                    return None
                served = await self.served(url, rule)
            creds = self._credentials(provider, served)
            return Holder(
                account=account,
                name=url,
                arn=arn,
                tags=tags,
                credentials=tuple(creds),
                account_held=True,
                finding=finding(served, [c.credential_id for c in creds]),
            )

        listed = sorted((await self._list_arns()).items())
        found = await asyncio.gather(*(one(url, arn) for url, arn in listed))
        return [h for h in found if h is not None]

    # -- the rotation -------------------------------------------------------------------

    async def make_material(self, rule: OidcThumbprintRule, user: str) -> SecretEntry:
        if rule not in self._rules:
            self._rules.append(rule)
        served = await self.served(user, rule)
        if served.thumbprint is None:
            raise Refused(f"{user}: {served.problem}; no thumbprint is added")
        return SecretEntry(
            kind=self.kind,
            credential_id="",
            created_at=utcnow(),
            public={
                THUMBPRINT: served.thumbprint,
                SUBJECT: served.subject,
                JWKS_HOST: served.jwks_host,
            },
        )

    def reusable(self, pending: SecretEntry) -> bool:
        return pending.credential_id == "" and bool(pending.public.get(THUMBPRINT))

    def matches(self, credential: Credential, pending: SecretEntry) -> bool:
        return credential.credential_id == pending.public.get(THUMBPRINT, "").lower()

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        if material is None or not material.public.get(THUMBPRINT):
            raise InputError(f"no thumbprint to add to {user}")
        new = material.public[THUMBPRINT].lower()
        provider = await self._provider(user)
        listed = [str(t).lower() for t in provider.get("ThumbprintList", [])]
        if new not in listed:
            if len(listed) >= MAX_THUMBPRINTS:
                served = await self.served(user)
                unmatched = [t for t in listed if t != served.thumbprint]
                if not unmatched:
                    raise LimitExceeded(
                        "UpdateOpenIDConnectProviderThumbprint",
                        "LimitExceeded",
                        f"{user} holds {MAX_THUMBPRINTS} thumbprints that all match",
                    )
                listed.remove(unmatched[0])  # the oldest that matches no chain served
            arn = await self._arn(user)
            with aws_errors("UpdateOpenIDConnectProviderThumbprint", name=user):
                await self._ctx.iam_once.update_open_id_connect_provider_thumbprint(
                    OpenIDConnectProviderArn=arn, ThumbprintList=[*listed, new]
                )
        return material.with_id(new)

    async def verify(self, user: str, entry: SecretEntry) -> None:
        settings = self._ctx.verify
        waits = delays(settings.initial_delay.total_seconds(), settings.max_delay.total_seconds())
        for attempt in range(settings.attempts):
            if attempt:
                await pause(next(waits))
            provider = await self._provider(user)
            listed = [str(t).lower() for t in provider.get("ThumbprintList", [])]
            if entry.credential_id in listed:
                return
        raise VerificationFailed(
            entry.credential_id, user, f"{settings.attempts} attempts: not in the provider's list"
        )

    async def set_status(self, user: str, credential_id: str, status: Status) -> None:
        return  # thumbprints have no status

    async def delete(self, user: str, credential_id: str) -> None:
        try:
            provider = await self._provider(user)
        except NoSuchEntity:
            return  # the provider is gone, and its thumbprints with it
        listed = [str(t).lower() for t in provider.get("ThumbprintList", [])]
        if credential_id not in listed:
            return  # already gone
        served = await self.served(user)
        if served.thumbprint is None or served.thumbprint == credential_id:
            raise Refused(
                f"{credential_id} is not removed from {user}: "
                + (served.problem or "it matches the chain the provider serves")
            )
        kept = [t for t in listed if t != credential_id]
        arn = await self._arn(user)
        with aws_errors("UpdateOpenIDConnectProviderThumbprint", name=user):
            await self._iam.update_open_id_connect_provider_thumbprint(
                OpenIDConnectProviderArn=arn, ThumbprintList=kept
            )


def finding(served: Served, listed: Sequence[str]) -> Finding:
    """The planner's verdict on one provider: what it serves against what IAM lists."""
    if served.thumbprint is None:
        return Finding(
            action=Action.BLOCK,
            reason=f"{served.problem}: refusing to add a thumbprint for a chain that does "
            "not verify (fix the provider's TLS, or the rule's ca_bundle)",
        )
    unmatched = [t for t in listed if t != served.thumbprint]
    if served.thumbprint not in listed:
        held = ", ".join(listed) or "none"
        return Finding(
            action=Action.ROTATE,
            reason=f"{served.jwks_host} serves a chain whose top intermediate CA "
            f"({served.subject}) has thumbprint {served.thumbprint}, which the provider "
            f"lacks (it has {held})",
        )
    reason = f"thumbprint {served.thumbprint} of {served.subject} ({served.jwks_host}) is listed"
    if unmatched:
        reason += f"; {len(unmatched)} listed match no chain served ({', '.join(unmatched)})"
    return Finding(action=Action.SKIP, reason=reason)


REGISTRATION = Registration(
    rule=OidcThumbprintRule,
    build=OidcThumbprints,
    iam=IamActions(
        scoped=(
            "iam:GetOpenIDConnectProvider",
            "iam:UpdateOpenIDConnectProviderThumbprint",
        ),
        unscoped=("iam:ListOpenIDConnectProviders",),
        resource="oidc-provider",
    ),
)
