"""Certificates for tests: CAs, leaves with chosen dates, issuer directories, moto seeding,
policy files with certificate rules, and the invariants a certificate rotation must leave."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from rotator import crypto, crypto_checks
from rotator.model import utcnow
from tests.support.cli import Cli
from tests.support.invariants import history
from tests.support.moto import MotoSandbox

DAY = timedelta(days=1)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, with PEM accessors."""

    cert: x509.Certificate
    key: crypto.PrivateKey

    @property
    def pem(self) -> str:
        return crypto.certificate_pem(self.cert)

    @property
    def key_pem(self) -> str:
        return crypto.private_key_pem(self.key)


def make_ca(cn: str, *, parent: Issued | None = None, days: int = 3650) -> Issued:
    """A root CA, or an intermediate signed by ``parent``."""
    now = utcnow()
    key = crypto.generate_key()
    issuer_name, signer = (parent.cert.subject, parent.key) if parent else (name(cn), key)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + days * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    return Issued(cert, key)


def make_leaf(
    cn: str,
    *,
    issuer: Issued | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    dns_names: tuple[str, ...] = (),
) -> Issued:
    """A leaf certificate with exactly these dates (default: valid from yesterday for 90
    days), signed by ``issuer`` or by itself."""
    now = utcnow()
    key = crypto.generate_key()
    start = not_before or now - DAY
    end = not_after or now + 90 * DAY
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer.cert.subject if issuer else name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if dns_names:
        sans = x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names])
        builder = builder.add_extension(sans, critical=False)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def write_directory(directory: Path, leaf: Issued, chain: list[Issued]) -> Path:
    """An ACME client's directory: cert.pem, privkey.pem, chain.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_text(leaf.pem)
    (directory / "privkey.pem").write_text(leaf.key_pem)
    (directory / "chain.pem").write_text("".join(c.pem for c in chain))
    return directory


def write_ca_files(directory: Path, ca: Issued) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.pem", directory / "ca.key"
    cert.write_text(ca.pem)
    key.write_text(ca.key_pem)
    return cert, key


def upload_server_certificate(
    sandbox: MotoSandbox, cert_name: str, leaf: Issued, *, path: str = "/", chain: str = ""
) -> None:
    kwargs: dict[str, Any] = {
        "ServerCertificateName": cert_name,
        "Path": path,
        "CertificateBody": leaf.pem,
        "PrivateKey": leaf.key_pem,
    }
    if chain:
        kwargs["CertificateChain"] = chain
    sandbox.iam.upload_server_certificate(**kwargs)


def server_certificates(sandbox: MotoSandbox) -> dict[str, x509.Certificate]:
    """``{name: certificate}`` of every server certificate in the account (from the body)."""
    iam = sandbox.iam
    found = {}
    for meta in iam.list_server_certificates()["ServerCertificateMetadataList"]:
        got = iam.get_server_certificate(ServerCertificateName=meta["ServerCertificateName"])
        body = got["ServerCertificate"]["CertificateBody"]
        found[meta["ServerCertificateName"]] = x509.load_pem_x509_certificate(body.encode())
    return found


def signing_certificates(sandbox: MotoSandbox, user: str) -> dict[str, tuple[str, str]]:
    """``{CertificateId: (Status, CertificateBody)}`` of a user's signing certificates."""
    listed = sandbox.iam.list_signing_certificates(UserName=user)["Certificates"]
    return {c["CertificateId"]: (c["Status"], c["CertificateBody"]) for c in listed}


POLICY_HEAD = """\
[journal]
url = "sqlite:///{tmp}/journal.db"

[audit]
file = "{tmp}/audit.jsonl"

[verify]
attempts = 3
initial_delay = "1s"
"""

SINK = '{{ type = "file", path = "{tmp}/secrets/{{account}}/{{name}}/{{kind}}.json" }}'


def signing_rule(tmp: Path, *, max_age: str = "0s", extra: str = "") -> str:
    return f"""
[[rules]]
name = "signing"
kind = "signing-certificate"
max_age = "{max_age}"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/signers/", users = ["*"] }}
sink = {SINK.format(tmp=tmp)}
{extra}"""


def server_rule(tmp: Path, issuer: str, *, names: str = '["*"]', retire: str = "0s") -> str:
    return f"""
[[rules]]
name = "web"
kind = "server-certificate"
retire_after = "{retire}"
issuer = {issuer}
select = {{ path_prefix = "/lb/", names = {names} }}
sink = {SINK.format(tmp=tmp)}
"""


def write_policy(cli: Cli, *rules: str) -> Path:
    cli.config.write_text(POLICY_HEAD.format(tmp=cli.tmp) + "".join(rules))
    return cli.config


def assert_key_matches(body: str, key_pem: str) -> None:
    cert = crypto.load_certificate(body, "certificate")
    key = crypto.load_private_key(key_pem, "key")
    assert crypto_checks.key_matches(cert, key), (
        "the sink's private key does not match the certificate"
    )


def assert_certificate_rotated_once(
    cli: Cli, sandbox: MotoSandbox, holder: str, kind: str, *, original: str
) -> dict[str, Any]:
    """After a zero-duration rotation of ``holder``'s certificate, however it got there:
    nothing in flight or failed; the original rotated by exactly one completed rotation;
    IAM holds exactly one certificate — the sink's current, whose private key matches it;
    no pending entry left. Returns the sink's current entry."""
    records = [r for r in history(cli) if r["user"] == holder and r["kind"] == kind]
    assert [r for r in records if r["state"] not in ("completed",)] == [], records
    rotated = Counter(r["credential_id"] for r in records)
    assert rotated == Counter({original: 1}), rotated
    doc = cli.sink_document(sandbox.account(), holder, kind)
    current = doc["current"]
    assert current is not None and doc["pending"] is None, doc
    if kind == "signing-certificate":
        held = signing_certificates(sandbox, holder)
        assert list(held) == [current["CredentialId"]], held
        status, body = held[current["CredentialId"]]
        assert status == "Active"
    else:
        held_certs = {n: c for n, c in server_certificates(sandbox).items() if n.startswith(holder)}
        assert list(held_certs) == [current["CredentialId"]], held_certs
        body = crypto.certificate_pem(held_certs[current["CredentialId"]])
    assert crypto.pem_fingerprint(body) == crypto.pem_fingerprint(current["CertificateBody"])
    assert_key_matches(body, current["PrivateKey"])
    return current  # type: ignore[no-any-return]
