"""What the two certificate kinds share: the fields of their sink entries, reading the
dates and fingerprint of a body IAM returns, and IAM's certificate error codes turned into
permanent errors that say what is wrong.

IAM's ``MalformedCertificate`` / ``InvalidCertificate`` / ``DuplicateCertificate`` /
``KeyPairMismatch`` / ``EntityAlreadyExists`` become ``CertificateRejected`` (a
``Permanent``): retrying the same upload cannot help. AWS's own message is replaced by ours,
so no certificate text (moto echoes the body) reaches an error, the journal or the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from rotator import crypto, crypto_checks
from rotator.aws import aws_errors
from rotator.errors import InputError, Permanent
from rotator.model import Credential
from rotator.sinks.base import SecretEntry

FINGERPRINT = "Fingerprint"  # SHA-256 of the certificate's DER, hex
NOT_AFTER = "NotAfter"  # ISO 8601, for people reading the sink

CERTIFICATE_CODES = {
    "MalformedCertificate": "IAM cannot parse the certificate, or it has expired",
    "InvalidCertificate": "IAM rejected the certificate as invalid",
    "DuplicateCertificate": "the same certificate is already associated with an IAM user "
    "in this account",
    "KeyPairMismatch": "the private key does not match the certificate",
    "EntityAlreadyExists": "a certificate with that name already exists",
}


class CertificateRejected(Permanent):
    """IAM refused a certificate upload; the message says why, without the certificate."""


@contextmanager
def certificate_errors(operation: str, **ids: str) -> Iterator[None]:
    """``aws_errors``, with IAM's certificate codes turned into ``CertificateRejected``."""
    try:
        with aws_errors(operation, **ids):
            yield
    except Permanent as exc:
        explanation = CERTIFICATE_CODES.get(exc.code)
        if explanation is None:
            raise
        raise CertificateRejected(operation, exc.code, explanation, ids) from None


@dataclass(frozen=True, kw_only=True)
class BodyInfo:
    """What rotator reads from a certificate body: never from IAM's metadata."""

    not_before: datetime
    not_after: datetime
    fingerprint: str


def read_body(body: str) -> BodyInfo | None:
    """The dates and fingerprint of the first certificate in ``body``; None if it does
    not parse (IAM accepted it, so this is unexpected; the credential then has no expiry)."""
    try:
        cert = x509.load_pem_x509_certificate(body.encode("utf-8", "replace"))
    except ValueError:
        return None
    return BodyInfo(
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint=crypto.fingerprint(cert),
    )


def entry_fingerprint(entry: SecretEntry) -> str:
    """The fingerprint of the certificate an entry holds ("" if it holds none)."""
    stored = entry.public.get(FINGERPRINT)
    if stored:
        return stored
    return crypto.pem_fingerprint(entry.public.get(crypto.CERTIFICATE_BODY, ""))


def key_pair_problem(entry: SecretEntry) -> str | None:
    """Why the entry's private key cannot sign for its certificate, or None if it can."""
    try:
        cert = crypto.load_certificate(entry.public[crypto.CERTIFICATE_BODY], "certificate")
        key = crypto.load_private_key(entry.reveal(crypto.PRIVATE_KEY), "private key")
    except (InputError, KeyError) as exc:
        return f"the sink's entry is incomplete or unreadable: {exc}"
    if not crypto_checks.key_matches(cert, key):
        return "the private key in the sink does not match the certificate"
    return None


class MaterialMatching:
    """``reusable`` and ``matches`` for kinds whose material rotator makes (a certificate
    and its key): a resumed create reuses pending material IAM never saw, and recognises
    an upload that happened before a crash by the certificate's fingerprint. The kind
    fills ``_fingerprints`` (credential ID -> fingerprint) whenever it lists."""

    def __init__(self) -> None:
        self._fingerprints: dict[str, str] = {}

    def reusable(self, pending: SecretEntry) -> bool:
        return (
            not pending.credential_id
            and crypto.CERTIFICATE_BODY in pending.public
            and crypto.PRIVATE_KEY in pending.secret
        )

    def matches(self, credential: Credential, pending: SecretEntry) -> bool:
        if pending.credential_id and credential.credential_id == pending.credential_id:
            return True
        listed = self._fingerprints.get(credential.credential_id, "")
        return bool(listed) and listed == entry_fingerprint(pending)
