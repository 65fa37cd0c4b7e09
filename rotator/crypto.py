"""Key pairs and X.509 certificates: making and reading them (pure; no I/O).

Making material: ``generate_key``, ``self_signed``, ``ca_signed``, ``subject_name``.
Reading it: ``load_certificate``, ``load_certificates`` (a chain), ``load_private_key``,
``fingerprint``. The checks IAM applies before accepting an upload are in
``rotator.crypto_checks`` (``material_problems``).

No function here puts a private key, or any PEM text, into an exception message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from rotator.errors import InputError

# The fields a ``SecretEntry`` carries certificate material in (the sinks write these).
CERTIFICATE_BODY = "CertificateBody"
CERTIFICATE_CHAIN = "CertificateChain"
PRIVATE_KEY = "PrivateKey"  # a secret field name (``redaction.is_secret_field``)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
MIN_RSA_BITS = 2048  # NIST SP 800-131A: RSA-1024 is disallowed for signatures
BACKDATE = timedelta(minutes=5)  # notBefore slack for clocks that run behind
_BEGIN_CERT = "-----BEGIN CERTIFICATE-----"


def generate_key(key_type: str = "rsa", size: int = 2048) -> PrivateKey:
    """A new private key: RSA of ``size`` bits, or EC on P-256 (``size`` ignored)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def private_key_pem(key: PrivateKey) -> str:
    """The key as unencrypted PEM in the traditional OpenSSL format IAM and ELB accept
    (``BEGIN RSA PRIVATE KEY`` / ``BEGIN EC PRIVATE KEY``)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def chain_pem(certs: Sequence[x509.Certificate]) -> str:
    return "".join(certificate_pem(c) for c in certs)


def escape_rdn_value(value: str) -> str:
    """``value`` escaped for an RFC 4514 attribute value (user names may hold ``,+=``)."""
    out = "".join(f"\\{c}" if c in ',+"\\<>;=' else c for c in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def subject_name(template: str, **fields: str) -> x509.Name:
    """An X.509 name from an RFC 4514 ``template`` such as ``"CN={user},O=Example"``; the
    ``fields`` are escaped before they are put in. Raises ``ValueError`` naming the problem."""
    try:
        text = template.format(**{k: escape_rdn_value(v) for k, v in fields.items()})
    except (KeyError, IndexError, ValueError) as exc:
        known = ", ".join(sorted(fields))
        raise ValueError(f"subject {template!r}: unknown field {exc} (known: {known})") from None
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise ValueError(f"subject {template!r} is not an RFC 4514 name: {exc}") from None
    if not list(name):
        raise ValueError(f"subject {template!r} is empty")
    return name


def _builder(
    key: PrivateKey,
    subject: x509.Name,
    issuer: x509.Name,
    not_before: datetime,
    not_after: datetime,
    dns_names: Sequence[str],
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if dns_names:
        sans = [x509.DNSName(n) for n in dns_names]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder


def self_signed(
    key: PrivateKey,
    subject: x509.Name,
    now: datetime,
    validity: timedelta,
    dns_names: Sequence[str] = (),
) -> x509.Certificate:
    """A certificate for ``key`` signed by itself, valid from ``now`` (less ``BACKDATE``)
    until ``now + validity``."""
    builder = _builder(key, subject, subject, now - BACKDATE, now + validity, dns_names)
    return builder.sign(key, hashes.SHA256())


def ca_signed(
    key: PrivateKey,
    subject: x509.Name,
    now: datetime,
    validity: timedelta,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    dns_names: Sequence[str] = (),
) -> x509.Certificate:
    """A certificate for ``key`` signed by the CA; it never outlives the CA's own
    certificate (``notAfter`` is capped at the CA's)."""
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    builder = _builder(key, subject, ca_cert.subject, now - BACKDATE, not_after, dns_names)
    return builder.sign(ca_key, hashes.SHA256())


# -- reading ----------------------------------------------------------------------------


def load_certificates(pem: str, what: str) -> list[x509.Certificate]:
    """Every certificate in ``pem``, in order. ``what`` names the source in messages.
    Raises ``InputError`` if there is none or one does not parse."""
    if _BEGIN_CERT not in pem:
        raise InputError(f"{what}: no PEM certificate found (expected {_BEGIN_CERT})")
    try:
        return x509.load_pem_x509_certificates(pem.encode("utf-8", "replace"))
    except ValueError:
        raise InputError(f"{what}: the PEM certificate does not parse") from None


def load_certificate(pem: str, what: str) -> x509.Certificate:
    """The one certificate in ``pem``. Raises ``InputError`` otherwise."""
    certs = load_certificates(pem, what)
    if len(certs) != 1:
        raise InputError(
            f"{what}: holds {len(certs)} certificates; the certificate body must hold exactly "
            "one (the issuers belong in the chain)"
        )
    return certs[0]


def load_private_key(pem: str, what: str) -> PrivateKey:
    """The RSA or EC private key in ``pem``. Raises ``InputError`` (never quoting the key)."""
    if "PRIVATE KEY-----" not in pem:
        raise InputError(f"{what}: no PEM private key found")
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8", "replace"), password=None)
    except TypeError:
        raise InputError(
            f"{what}: the private key is encrypted; IAM needs it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"{what}: the PEM private key does not parse") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InputError(f"{what}: a {type(key).__name__}; IAM accepts RSA or EC keys")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise InputError(
            f"{what}: a weak RSA-{key.key_size} key; rotator accepts RSA of at least "
            f"{MIN_RSA_BITS} bits, or EC"
        )
    return key


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint of the certificate's DER encoding, as lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def pem_fingerprint(pem: str) -> str:
    """The fingerprint of the first certificate in ``pem``, or "" if none parses (used to
    recognise an upload; IAM may have re-wrapped the PEM text)."""
    try:
        return fingerprint(x509.load_pem_x509_certificate(pem.encode("utf-8", "replace")))
    except ValueError:
        return ""


def describe(cert: x509.Certificate) -> str:
    """A short, human name for a certificate: its subject."""
    return cert.subject.rfc4514_string() or "(empty subject)"
