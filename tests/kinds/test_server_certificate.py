"""``ServerCertificates`` against the in-memory IAM twin (IAM's validation, paging and
``DeleteConflict``, which moto lacks), driven through the real protocol. What every kind
must do is in ``test_contract.py``, against moto and the twin."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from rotator import crypto, crypto_checks
from rotator.errors import Refused
from rotator.kinds.certificate_common import CertificateRejected
from rotator.kinds.server_certificate import REGISTRATION, ServerCertificates
from rotator.model import Kind, Outcome, RotationState, Status, utcnow
from rotator.policy import Rule
from rotator.sinks.base import SecretEntry
from rotator.testing import MemoryIam
from tests.kinds.harness import ACCOUNT, Harness, context, rule
from tests.support.certs import DAY, Issued, make_ca, make_leaf, write_directory

SELF_SIGNED = {"type": "self-signed"}
TODAY = f"{utcnow():%Y%m%d}"
FAKE_EXPIRATION = datetime(2010, 5, 8, tzinfo=UTC)  # metadata rotator must never trust


def twin() -> MemoryIam:
    iam = MemoryIam()
    iam.page_size = 2  # small pages, so pagination is exercised
    return iam


def web_rule(issuer: dict[str, object] | None = None, **fields: object) -> Rule:
    settings = {"retire_after": "0s", **fields}
    return rule(
        name="web",
        kind="server-certificate",
        issuer=issuer or SELF_SIGNED,
        select={"path_prefix": "/lb/", "names": ["web", "api*"]},
        **settings,
    )


async def seed(iam: MemoryIam, name: str, *, days_left: int, path: str = "/lb/") -> Issued:
    """Upload a certificate as if before rotator, its metadata's Expiration made wrong."""
    leaf = make_leaf(name, not_before=utcnow() - 60 * DAY, not_after=utcnow() + days_left * DAY)
    await iam.upload_server_certificate(
        ServerCertificateName=name, CertificateBody=leaf.pem, PrivateKey=leaf.key_pem, Path=path
    )
    iam.server_certificates[name].expiration = FAKE_EXPIRATION
    return leaf


async def test_holders_group_versions_by_base_with_dates_from_the_body_not_metadata() -> None:
    iam = twin()
    old = await seed(iam, "web", days_left=10)
    await seed(iam, "api-v2", days_left=40)
    new = make_leaf("web", not_before=utcnow() - DAY, not_after=utcnow() + 89 * DAY)
    await iam.upload_server_certificate(
        ServerCertificateName="web-20260101",
        CertificateBody=new.pem,
        PrivateKey=new.key_pem,
        Path="/lb/",
    )
    await seed(iam, "other", days_left=5)  # no rule names it
    await seed(iam, "api-internal", days_left=5, path="/elsewhere/")  # outside the path
    kind = ServerCertificates(context(iam))
    holders = {h.name: h for h in await kind.account_holders(ACCOUNT, [web_rule()])}
    assert sorted(holders) == ["api-v2", "web"]
    web = holders["web"]
    assert web.path == "/lb/"
    assert web.arn.endswith(":server-certificate/lb/web-20260101")
    assert web.offered is None
    by_id = {c.credential_id: c for c in web.credentials}
    assert {i: c.status for i, c in by_id.items()} == {
        "web": Status.INACTIVE,
        "web-20260101": Status.ACTIVE,
    }
    assert by_id["web"].expires == old.cert.not_valid_after_utc  # not the 2010 metadata
    assert by_id["web-20260101"].not_before == new.cert.not_valid_before_utc
    assert all(c.kind is Kind.SERVER_CERTIFICATE for c in web.credentials)
    assert iam.calls["ListServerCertificates"] == 2, "both pages of /lb/ were read"
    assert [c.credential_id for c in await kind.list("web")] == ["web", "web-20260101"]


async def test_a_directory_rule_offers_its_certificates_not_before(tmp_path: Path) -> None:
    iam = twin()
    await seed(iam, "web", days_left=10)
    ca = make_ca("ACME")
    leaf = make_leaf("web", issuer=ca, not_before=utcnow() - DAY / 24)
    directory = write_directory(tmp_path, leaf, [ca])
    the_rule = web_rule({"type": "directory", "path": str(directory)})
    (holder,) = await ServerCertificates(context(iam)).account_holders(ACCOUNT, [the_rule])
    assert holder.offered == leaf.cert.not_valid_before_utc


async def test_a_rotation_uploads_a_version_and_retires_the_old_one() -> None:
    iam = twin()
    await seed(iam, "web", days_left=10)
    harness = Harness(ServerCertificates(context(iam)), web_rule())
    rotation, done = await harness.drive(await harness.start("web", "web"))
    assert rotation.state is RotationState.COMPLETED
    assert [(r.step, r.outcome) for r in done][-1][1] is Outcome.DONE
    assert list(iam.server_certificates) == [f"web-{TODAY}"]
    held = iam.server_certificates[f"web-{TODAY}"]
    assert held.path == "/lb/"
    current = (await harness.document("web")).current
    assert current is not None and current.credential_id == f"web-{TODAY}"
    cert = crypto.load_certificate(held.body, "iam")
    key = crypto.load_private_key(current.reveal(crypto.PRIVATE_KEY), "sink")
    assert crypto_checks.key_matches(cert, key)
    assert cert.not_valid_after_utc > utcnow() + 80 * DAY
    assert {f"iam:{call}" for call in iam.calls} <= set(REGISTRATION.iam.all)


async def test_a_second_renewal_the_same_day_gets_a_suffix() -> None:
    iam = twin()
    await seed(iam, "web", days_left=10)
    harness = Harness(ServerCertificates(context(iam)), web_rule())
    first, _ = await harness.drive(await harness.start("web", "web"))
    assert first.new_credential_id == f"web-{TODAY}"
    second, _ = await harness.drive(await harness.start("web", f"web-{TODAY}"))
    assert second.new_credential_id == f"web-{TODAY}-2"
    assert second.state is RotationState.COMPLETED
    assert list(iam.server_certificates) == [f"web-{TODAY}-2"]


async def test_a_certificate_attached_to_a_load_balancer_holds_its_retirement() -> None:
    iam = twin()
    await seed(iam, "web", days_left=10)
    iam.attach_server_certificate("web")
    harness = Harness(ServerCertificates(context(iam)), web_rule())
    rotation, done = await harness.drive(await harness.start("web", "web"))
    assert rotation.state is RotationState.DEACTIVATED
    assert (done[-1].step, done[-1].outcome) == ("delete", Outcome.HELD)
    assert "still in use, not deleted" in done[-1].reason
    assert "loadbalancer/web" in done[-1].reason
    assert rotation.held_since is not None
    assert sorted(iam.server_certificates) == ["web", f"web-{TODAY}"]

    iam.detach_server_certificate("web")  # the load balancer now uses the new version
    rotation, done = await harness.drive(rotation)
    assert rotation.state is RotationState.COMPLETED
    assert list(iam.server_certificates) == [f"web-{TODAY}"]


async def test_an_upload_that_happened_before_a_crash_is_recognised_by_its_fingerprint() -> None:
    iam = twin()
    await seed(iam, "web", days_left=10)
    kind = ServerCertificates(context(iam))
    the_rule = web_rule()
    pending = await kind.make_material(the_rule, "web")
    assert pending is not None and kind.reusable(pending)
    uploaded = await kind.create("web", pending, "")
    assert not kind.reusable(uploaded)
    listed = {c.credential_id: c for c in await kind.list("web")}
    assert kind.matches(listed[uploaded.credential_id], pending), "same body: adopted"
    assert not kind.matches(listed["web"], pending), "another body: an orphan or the old one"
    assert kind.matches(listed[uploaded.credential_id], uploaded)


async def test_iam_rejections_name_the_problem_and_never_the_material() -> None:
    iam = twin()
    kind = ServerCertificates(context(iam))
    leaf, other = make_leaf("web"), make_leaf("other")
    entry = SecretEntry(
        kind=Kind.SERVER_CERTIFICATE,
        credential_id="",
        created_at=datetime.now(UTC),
        public={crypto.CERTIFICATE_BODY: leaf.pem, "Path": "/lb/"},
        secret={crypto.PRIVATE_KEY: SecretStr(other.key_pem)},
    )
    with pytest.raises(CertificateRejected) as caught:
        await kind.create("web", entry, "")
    message = str(caught.value)
    assert caught.value.code == "KeyPairMismatch"
    assert "the private key does not match the certificate" in message
    for line in (leaf.pem + other.key_pem).splitlines()[1:-1]:
        assert line not in message


async def test_a_directory_certificate_no_newer_than_iams_is_refused(tmp_path: Path) -> None:
    iam = twin()
    leaf = await seed(iam, "web", days_left=10)
    directory = write_directory(tmp_path, leaf, [])
    kind = ServerCertificates(context(iam))
    with pytest.raises(Refused, match=re.escape(f"{directory}/cert.pem (issued ")) as caught:
        await kind.make_material(web_rule({"type": "directory", "path": str(directory)}), "web")
    assert "is not newer than web in IAM" in str(caught.value)
