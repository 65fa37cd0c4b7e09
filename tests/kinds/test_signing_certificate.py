"""``SigningCertificates`` against the in-memory IAM twin (which, unlike moto, enforces
IAM's ``DuplicateCertificate``), driven through the real protocol. What every kind must do
is in ``test_contract.py``, against moto and the twin."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from rotator import crypto, crypto_checks
from rotator.errors import InputError, LimitExceeded, VerificationFailed, WrongIdentity
from rotator.kinds import TracksLastUse
from rotator.kinds.certificate_common import CertificateRejected
from rotator.kinds.signing_certificate import (
    REGISTRATION,
    SigningCertificateRule,
    SigningCertificates,
    new_material,
)
from rotator.model import RotationState, Status, utcnow
from rotator.sinks.base import SecretEntry
from rotator.testing import MemoryIam
from tests.kinds.harness import Harness, context, rule
from tests.support.certs import DAY, make_leaf


def signing_rule(**fields: object) -> SigningCertificateRule:
    made = rule(
        name="signing",
        kind="signing-certificate",
        deactivate_after="0s",
        delete_after="0s",
        **fields,
    )
    assert isinstance(made, SigningCertificateRule)
    return made


async def seeded(user: str = "alice") -> tuple[MemoryIam, str]:
    """A twin where ``user`` has one signing certificate; its calls so far are forgotten."""
    iam = MemoryIam()
    await iam.create_user(UserName=user)
    leaf = make_leaf(user, not_before=utcnow() - 300 * DAY, not_after=utcnow() + 20 * DAY)
    made = await iam.upload_signing_certificate(UserName=user, CertificateBody=leaf.pem)
    iam.calls.clear()
    return iam, made["Certificate"]["CertificateId"]


def test_material_follows_the_rule_and_passes_iams_checks() -> None:
    now = utcnow()
    the_rule = signing_rule(
        key={"type": "ec"}, subject="CN={user},OU=Signing,O=Example", validity="30d"
    )
    entry = new_material(the_rule, "a+b", now)
    assert entry.credential_id == ""
    cert = crypto.load_certificate(entry.public[crypto.CERTIFICATE_BODY], "entry")
    key = crypto.load_private_key(entry.reveal(crypto.PRIVATE_KEY), "entry")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert crypto_checks.key_matches(cert, key)
    assert cert.subject.rfc4514_string() == "CN=a\\+b,OU=Signing,O=Example"
    assert cert.not_valid_after_utc == (now + 30 * DAY).replace(microsecond=0)
    assert "PRIVATE" not in repr(entry)


def test_a_subject_that_cannot_be_built_is_an_input_error_naming_the_rule() -> None:
    with pytest.raises(
        InputError, match=re.escape("rule 'signing': subject: subject 'CN={nobody}'")
    ):
        new_material(signing_rule(subject="CN={nobody}"), "alice", utcnow())


async def test_listing_reads_expiry_from_the_body() -> None:
    iam, old = await seeded()
    (listed,) = await SigningCertificates(context(iam)).list("alice")
    assert listed.credential_id == old
    assert listed.status is Status.ACTIVE
    assert listed.expires is not None
    assert 19 * DAY < listed.expires - utcnow() <= 20 * DAY


async def test_a_rotation_replaces_the_certificate_and_keeps_the_key_in_the_sink() -> None:
    iam, old = await seeded()
    harness = Harness(SigningCertificates(context(iam)), signing_rule())
    rotation, done = await harness.drive(await harness.start("alice", old))
    assert rotation.state is RotationState.COMPLETED, [(d.step, d.outcome, d.reason) for d in done]
    (cert,) = iam.users["alice"].signing_certificates
    assert cert.certificate_id == rotation.new_credential_id != old
    assert cert.status == "Active"
    current = (await harness.document("alice")).current
    assert current is not None and current.credential_id == cert.certificate_id
    assert crypto_checks.key_matches(
        crypto.load_certificate(cert.body, "iam"),
        crypto.load_private_key(current.reveal(crypto.PRIVATE_KEY), "sink"),
    )
    assert {f"iam:{call}" for call in iam.calls} <= set(REGISTRATION.iam.all)


async def test_iams_certificate_errors_become_permanent_errors_that_say_why() -> None:
    iam, _ = await seeded()
    kind = SigningCertificates(context(iam))
    entry = new_material(signing_rule(), "alice", utcnow())
    uploaded = await kind.create("alice", entry, "")
    with pytest.raises(CertificateRejected) as duplicate:
        await kind.create("alice", entry, "")
    assert duplicate.value.code == "DuplicateCertificate"
    assert "already associated with an IAM user" in str(duplicate.value)
    garbage = replace(entry, public={crypto.CERTIFICATE_BODY: "-----BEGIN CERTIFICATE-----\nx"})
    with pytest.raises(CertificateRejected, match="cannot parse the certificate") as malformed:
        await kind.create("alice", garbage, "")
    assert "BEGIN CERTIFICATE" not in str(malformed.value), "the body is not echoed"
    with pytest.raises(LimitExceeded):
        await kind.create("alice", new_material(signing_rule(), "alice", utcnow()), "")
    assert uploaded.credential_id


async def test_verify_wants_the_same_body_active_and_a_key_that_matches() -> None:
    iam, _ = await seeded()
    kind = SigningCertificates(context(iam))
    entry = await kind.create("alice", new_material(signing_rule(), "alice", utcnow()), "")
    await kind.verify("alice", entry)
    await kind.set_status("alice", entry.credential_id, Status.INACTIVE)
    with pytest.raises(VerificationFailed, match="listed Inactive"):
        await kind.verify("alice", entry)
    other = make_leaf("someone else")
    wrong_key = replace(entry, secret={crypto.PRIVATE_KEY: SecretStr(other.key_pem)})
    with pytest.raises(WrongIdentity, match="private key in the sink does not match"):
        await kind.verify("alice", wrong_key)
    gone = SecretEntry(
        kind=entry.kind,
        credential_id="NOPE",
        created_at=entry.created_at,
        public=entry.public,
        secret=entry.secret,
    )
    with pytest.raises(VerificationFailed, match="not listed"):
        await kind.verify("alice", gone)


async def test_a_resumed_create_reuses_or_adopts_the_stored_material() -> None:
    iam, _ = await seeded()
    kind = SigningCertificates(context(iam))
    pending = new_material(signing_rule(), "alice", utcnow())
    assert kind.reusable(pending)
    uploaded = await kind.create("alice", pending, "")
    assert not kind.reusable(uploaded)
    listed = {c.credential_id: c for c in await kind.list("alice")}
    assert kind.matches(listed[uploaded.credential_id], pending)
    assert sum(kind.matches(c, pending) for c in listed.values()) == 1
    await kind.delete("alice", uploaded.credential_id)
    await kind.delete("alice", uploaded.credential_id)  # already gone: a no-op
    assert not isinstance(kind, TracksLastUse), "IAM does not record signing-certificate use"
