"""The contract every ``CredentialKind`` keeps (``rotator/kinds/base.py``: the core and each
capability a kind has), run for every kind against the moto server over real HTTP and
against the in-memory IAM twin (``rotator.testing.MemoryIam``); service-specific
credentials, which moto lacks, against the twin alone.

Running the same suite against both is also what keeps the twin honest: where it and moto
answer differently for a call both implement, a test here fails.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from rotator import passwords
from rotator.errors import LimitExceeded, NoSuchEntity, Refused
from rotator.kinds import AccountHolders, Disables, MakesMaterial, TracksLastUse, facts_of
from rotator.kinds.access_key import AccessKeyRule
from rotator.kinds.certificate_common import NOT_AFTER
from rotator.kinds.login_profile import PASSWORD, RESET_REQUIRED, LoginProfileRule, LoginProfiles
from rotator.kinds.server_certificate import ServerCertificateRule
from rotator.kinds.service_credential import ServiceCredentialRule
from rotator.kinds.signing_certificate import SigningCertificateRule
from rotator.kinds.ssh_public_key import SshPublicKeyRule
from rotator.model import Credential, Kind, Status
from rotator.policy import MemorySinkConfig, Rule
from rotator.sinks.base import SecretEntry
from tests.kinds.conftest import Backend

SINK = MemorySinkConfig(type="memory")
CODECOMMIT = "codecommit.amazonaws.com"
COMPLEX = "Aa1!" + "x" * 20
ACCOUNT = "123456789012"


def rule_for(kind: Kind) -> Rule:
    if kind is Kind.ACCESS_KEY:
        return AccessKeyRule(name="keys", kind=kind, sink=SINK)
    if kind is Kind.SSH_PUBLIC_KEY:
        return SshPublicKeyRule(name="ssh", kind=kind, sink=SINK, key_size=2048)
    if kind is Kind.SERVICE_CREDENTIAL:
        return ServiceCredentialRule(name="svc", kind=kind, sink=SINK, service=CODECOMMIT)
    if kind is Kind.SIGNING_CERTIFICATE:
        return SigningCertificateRule(name="signing", kind=kind, sink=SINK)
    if kind is Kind.SERVER_CERTIFICATE:
        return ServerCertificateRule.model_validate(
            {
                "name": "web",
                "kind": kind,
                "sink": SINK,
                "issuer": {"type": "self-signed"},
                "select": {"names": ["web"]},
            }
        )
    return LoginProfileRule(name="console", kind=Kind.LOGIN_PROFILE, sink=SINK)


TWO_SLOT = [
    pytest.param(Kind.ACCESS_KEY, id="access-key"),
    pytest.param(Kind.SIGNING_CERTIFICATE, id="signing-certificate"),
    pytest.param(Kind.SSH_PUBLIC_KEY, id="ssh-public-key"),
    pytest.param(Kind.SERVICE_CREDENTIAL, id="service-credential"),
]
# IAM's limits per user (per service), as AWS documents them.
LIMITS = {
    Kind.ACCESS_KEY: 2,
    Kind.SIGNING_CERTIFICATE: 2,
    Kind.SSH_PUBLIC_KEY: 5,
    Kind.SERVICE_CREDENTIAL: 2,
}


def skip_unless_implemented(backend: Backend, kind: Kind) -> None:
    if backend.name == "moto" and kind is Kind.SERVICE_CREDENTIAL:
        pytest.skip("moto does not implement service-specific credentials")


async def make(backend: Backend, kind: Kind, user: str = "alice") -> tuple[Rule, object]:
    rule = rule_for(kind)
    impl = backend.kind(kind)
    material = await impl.make_material(rule, user) if isinstance(impl, MakesMaterial) else None
    entry = await impl.create(user, material, rule.slot)
    return rule, entry


# -- two-slot kinds ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", TWO_SLOT)
async def test_listing_a_missing_user_raises_no_such_entity(backend: Backend, kind: Kind) -> None:
    skip_unless_implemented(backend, kind)
    with pytest.raises(NoSuchEntity):
        await backend.kind(kind).list("nobody", rule_for(kind).slot)


@pytest.mark.parametrize("kind", TWO_SLOT)
async def test_a_created_credential_is_listed_active_matched_and_verified(
    backend: Backend, kind: Kind
) -> None:
    skip_unless_implemented(backend, kind)
    await backend.user("alice")
    impl, rule = backend.kind(kind), rule_for(kind)
    assert await impl.list("alice", rule.slot) == []
    material = None
    if isinstance(impl, MakesMaterial):  # rotator makes it: reusable until IAM has seen it
        material = await impl.make_material(rule, "alice")
        assert material.credential_id == ""
        assert impl.reusable(material)
    entry = await impl.create("alice", material, rule.slot)
    assert entry.credential_id and entry.secret, "an ID and the secret, stored pending next"
    if isinstance(impl, MakesMaterial):
        assert not impl.reusable(entry)
    (listed,) = await impl.list("alice", rule.slot)
    assert listed.credential_id == entry.credential_id
    assert listed.status is Status.ACTIVE
    assert listed.slot == rule.slot
    assert impl.matches(listed, entry)
    other = Credential(
        kind=kind, credential_id="OTHER", status=Status.ACTIVE, created=listed.created
    )
    assert not impl.matches(other, entry)
    if isinstance(impl, TracksLastUse):
        assert await impl.last_used("alice", entry.credential_id) is None
    await impl.verify("alice", entry)
    if isinstance(impl, TracksLastUse):  # verifying signs a request with the key: IAM records it
        assert await impl.last_used("alice", entry.credential_id) is not None


@pytest.mark.parametrize("kind", TWO_SLOT)
async def test_status_changes_and_deletes_are_idempotent(backend: Backend, kind: Kind) -> None:
    skip_unless_implemented(backend, kind)
    await backend.user("alice")
    rule, entry = await make(backend, kind)
    impl, cid = backend.kind(kind), entry.credential_id  # type: ignore[attr-defined]
    for _ in range(2):
        await impl.set_status("alice", cid, Status.INACTIVE)
        assert [c.status for c in await impl.list("alice", rule.slot)] == [Status.INACTIVE]
    if isinstance(impl, Disables):
        await impl.set_status("alice", cid, Status.ACTIVE)
        await impl.disable("alice", cid)
        await impl.disable("alice", cid)
        assert [c.status for c in await impl.list("alice", rule.slot)] == [Status.INACTIVE]
    await impl.delete("alice", cid)
    await impl.delete("alice", cid)
    assert await impl.list("alice", rule.slot) == []


@pytest.mark.parametrize("kind", TWO_SLOT)
async def test_creating_past_iams_limit_raises_limit_exceeded(backend: Backend, kind: Kind) -> None:
    assert facts_of(kind).limit == LIMITS[kind], "the kind declares IAM's limit"
    skip_unless_implemented(backend, kind)
    if backend.name == "moto" and kind is Kind.SSH_PUBLIC_KEY:
        pytest.skip("moto does not enforce the five-keys-per-user limit")
    await backend.user("alice")
    for _ in range(LIMITS[kind]):
        await make(backend, kind)
    with pytest.raises(LimitExceeded):
        await make(backend, kind)


async def test_a_pending_ssh_key_is_reused_until_iam_has_seen_it(backend: Backend) -> None:
    await backend.user("alice")
    impl, rule = backend.kind(Kind.SSH_PUBLIC_KEY), rule_for(Kind.SSH_PUBLIC_KEY)
    pending = await impl.make_material(rule, "alice")
    assert pending is not None and impl.reusable(pending)
    entry = await impl.create("alice", pending, "")
    assert entry.secret == pending.secret, "the key uploaded is the one stored pending"
    (listed,) = await impl.list("alice")
    assert impl.matches(listed, pending), "an upload made before a crash is recognised"
    stale = listed.created - timedelta(hours=1)
    assert not impl.matches(
        Credential(
            kind=Kind.SSH_PUBLIC_KEY, credential_id="APKAOLD", status=Status.ACTIVE, created=stale
        ),
        pending,
    ), "a key uploaded before the pending one was made is not it"


async def test_a_pending_signing_certificate_is_reused_until_iam_has_seen_it(
    backend: Backend,
) -> None:
    await backend.user("alice")
    impl = backend.kind(Kind.SIGNING_CERTIFICATE)
    rule = rule_for(Kind.SIGNING_CERTIFICATE)
    assert isinstance(impl, MakesMaterial)
    pending = await impl.make_material(rule, "alice")
    entry = await impl.create("alice", pending, "")
    assert entry.secret == pending.secret, "the certificate uploaded is the one stored pending"
    (listed,) = await impl.list("alice")
    assert listed.expires is not None
    assert listed.expires.isoformat() == pending.public[NOT_AFTER], "expiry read from the body"
    assert impl.matches(listed, pending), "an upload made before a crash is recognised"
    another = await impl.make_material(rule, "alice")
    assert not impl.matches(listed, another), "a different certificate is not it"


# -- server certificates (held by the account, renewed as versions) ---------------------


async def new_version(backend: Backend, base: str = "web") -> tuple[SecretEntry, SecretEntry]:
    """(the material made, the entry IAM took it as) for a new version of ``base``."""
    impl = backend.kind(Kind.SERVER_CERTIFICATE)
    assert isinstance(impl, MakesMaterial)
    pending = await impl.make_material(rule_for(Kind.SERVER_CERTIFICATE), base)
    return pending, await impl.create(base, pending, "")


async def test_a_server_certificate_version_is_uploaded_listed_matched_and_verified(
    backend: Backend,
) -> None:
    impl, rule = backend.kind(Kind.SERVER_CERTIFICATE), rule_for(Kind.SERVER_CERTIFICATE)
    assert isinstance(impl, AccountHolders) and isinstance(impl, MakesMaterial)
    assert await impl.account_holders(ACCOUNT, [rule]) == []
    assert await impl.list("web") == []
    pending = await impl.make_material(rule, "web")
    assert pending.credential_id == "" and impl.reusable(pending)
    entry = await impl.create("web", pending, "")
    assert re.fullmatch(r"web-\d{8}", entry.credential_id), "named by rule's name_format"
    assert entry.secret == pending.secret and not impl.reusable(entry)
    (holder,) = await impl.account_holders(ACCOUNT, [rule])
    assert (holder.name, holder.account_held, holder.path) == ("web", True, "/")
    (listed,) = holder.credentials
    assert listed.credential_id == entry.credential_id
    assert listed.status is Status.ACTIVE
    assert listed.expires is not None
    assert listed.expires.isoformat() == pending.public[NOT_AFTER], "expiry read from the body"
    assert await impl.list("web") == [listed]
    assert impl.matches(listed, pending), "an upload made before a crash is recognised"
    await impl.verify("web", entry)


async def test_the_newest_server_certificate_version_is_active_and_deletes_are_idempotent(
    backend: Backend,
) -> None:
    impl = backend.kind(Kind.SERVER_CERTIFICATE)
    _, first = await new_version(backend)
    _, second = await new_version(backend)
    old, new = first.credential_id, second.credential_id
    assert new == f"{old}-2", "a second version the same day gets a suffix"
    statuses = {c.credential_id: c.status for c in await impl.list("web")}
    assert statuses == {old: Status.INACTIVE, new: Status.ACTIVE}
    await impl.set_status("web", old, Status.ACTIVE)  # server certificates have no status
    assert {c.credential_id: c.status for c in await impl.list("web")} == statuses
    await impl.delete("web", old)
    await impl.delete("web", old)
    assert [c.credential_id for c in await impl.list("web")] == [new]


# -- login profiles ----------------------------------------------------------------------


async def test_a_user_without_console_access_has_no_password_to_rotate(backend: Backend) -> None:
    await backend.user("alice")
    impl = backend.kind(Kind.LOGIN_PROFILE)
    assert await impl.list("alice") == []
    with pytest.raises(NoSuchEntity):
        await impl.list("nobody")


async def test_the_pending_password_is_applied_and_the_profile_keeps_its_id(
    backend: Backend,
) -> None:
    await backend.user("alice", password=COMPLEX)
    await backend.iam.update_account_password_policy(
        MinimumPasswordLength=30,
        RequireSymbols=True,
        RequireNumbers=True,
        PasswordReusePrevention=5,
    )
    impl, rule = backend.kind(Kind.LOGIN_PROFILE), rule_for(Kind.LOGIN_PROFILE)
    (before,) = await impl.list("alice")
    assert before.credential_id == "alice"
    pending = await impl.make_material(rule, "alice")
    assert pending is not None and impl.reusable(pending)
    assert pending.credential_id.startswith("pw-")
    assert pending.public[RESET_REQUIRED] == "true"
    password = pending.reveal(PASSWORD)
    assert len(password) == 30
    assert isinstance(impl, LoginProfiles)
    assert passwords.problems(password, await impl.password_policy()) == []
    entry = await impl.create("alice", pending, "")
    assert entry == pending
    assert backend.password_of("alice") == password
    (after,) = await impl.list("alice")
    assert after.credential_id == "alice" and not impl.matches(after, pending)
    await impl.verify("alice", entry)
    await impl.create("alice", pending, "")  # applied again after a crash: harmless
    assert backend.password_of("alice") == password


async def test_a_console_password_is_never_deactivated_or_deleted_by_a_rotation(
    backend: Backend,
) -> None:
    await backend.user("alice", password=COMPLEX)
    impl = backend.kind(Kind.LOGIN_PROFILE)
    await impl.set_status("alice", "alice", Status.ACTIVE)
    with pytest.raises(Refused):
        await impl.set_status("alice", "alice", Status.INACTIVE)
    with pytest.raises(Refused):
        await impl.delete("alice", "alice")
    assert backend.password_of("alice") == COMPLEX


async def test_disabling_an_unused_password_deletes_its_login_profile(backend: Backend) -> None:
    await backend.user("alice", password=COMPLEX)
    impl = backend.kind(Kind.LOGIN_PROFILE)
    assert await impl.last_used("alice", "alice") is None
    used = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    backend.use_password("alice", used)
    assert await impl.last_used("alice", "alice") == used
    await impl.disable("alice", "alice")
    await impl.disable("alice", "alice")
    assert await impl.list("alice") == []
    assert backend.password_of("alice") is None
