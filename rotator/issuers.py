"""Where a new server certificate comes from: the rule's ``issuer``.

* ``self-signed`` — a new key pair and a certificate signed by itself;
* ``local-ca`` — a new key pair and a certificate signed by the team's CA (``cert`` and
  ``key`` are PEM files; ``cert`` may hold the CA's own issuers after it, which then form
  the chain);
* ``directory`` — what an ACME client left in ``path``: ``cert.pem``, ``privkey.pem`` and
  ``chain.pem`` (empty for no chain). It is uploaded only when newer than IAM's.

The issuer models (and ``KeySpec``, the key pair both certificate kinds generate) are the
options of the certificate kinds' rules (``rotator/kinds/``). ``issue`` returns checked
``Material`` (every problem IAM would reject is an ``InputError`` naming the file);
``offered`` is the notBefore of a directory's ``cert.pem``; ``config_problems`` is the
check ``rotator validate`` / ``run`` apply before any AWS call (each rule's
``input_problems``, built from ``issuer_problems``, ``template_problems`` and
``name_format_problems`` here). File reads are blocking: async callers run these in a
worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from cryptography import x509
from pydantic import Field, SecretStr, field_validator

from rotator import crypto, crypto_checks
from rotator.errors import InputError
from rotator.policy import Duration, Rule, _Strict

if TYPE_CHECKING:
    from rotator.kinds.server_certificate import ServerCertificateRule

CERT_FILE = "cert.pem"
KEY_FILE = "privkey.pem"
CHAIN_FILE = "chain.pem"
SAMPLE = "example"  # stands in for a holder's name when a template is checked


class KeySpec(_Strict):
    """The key pair rotator generates."""

    type: Literal["rsa", "ec"] = "rsa"
    size: int = 2048  # RSA bits; ignored for EC (P-256)

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value not in (2048, 3072, 4096):
            raise ValueError(f"key size {value} is not one of 2048, 3072, 4096")
        return value


class SelfSignedIssuer(_Strict):
    """A self-signed certificate, for internal endpoints."""

    type: Literal["self-signed"]
    key: KeySpec = Field(default_factory=KeySpec)
    subject: str = "CN={name}"
    dns_names: list[str] = Field(default_factory=list)
    validity: Duration = timedelta(days=90)


class LocalCaIssuer(_Strict):
    """A certificate signed by the team's own CA (its certificate and key as PEM files)."""

    type: Literal["local-ca"]
    cert: Path
    key: Path
    key_spec: KeySpec = Field(default_factory=KeySpec)
    subject: str = "CN={name}"
    dns_names: list[str] = Field(default_factory=list)
    validity: Duration = timedelta(days=90)


class DirectoryIssuer(_Strict):
    """A certificate an ACME client (certbot ...) left in a directory: ``cert.pem``,
    ``privkey.pem``, ``chain.pem``. Uploaded when it is newer than what IAM holds."""

    type: Literal["directory"]
    path: Path


Issuer = Annotated[SelfSignedIssuer | LocalCaIssuer | DirectoryIssuer, Field(discriminator="type")]


@dataclass(frozen=True, kw_only=True)
class Material:
    """A checked certificate, its chain (PEM, "" for none) and its private key."""

    certificate: str
    chain: str
    private_key: SecretStr
    not_before: datetime
    not_after: datetime
    fingerprint: str
    source: str  # for people: "self-signed", "local CA <subject>", "<dir>/cert.pem"


def issue(rule: ServerCertificateRule, base_name: str, now: datetime) -> Material:
    """New material for the certificate ``base_name`` from ``rule.issuer``, checked as IAM
    would check it. Raises ``InputError`` naming the problem and the file."""
    issuer = rule.issuer
    if isinstance(issuer, DirectoryIssuer):
        return _from_directory(issuer.path, now)
    if isinstance(issuer, LocalCaIssuer):
        ca_certs, ca_key = _load_ca(issuer)
        key = crypto.generate_key(issuer.key_spec.type, issuer.key_spec.size)
        subject = _subject(issuer.subject, base_name)
        cert = crypto.ca_signed(
            key, subject, now, issuer.validity, ca_certs[0], ca_key, issuer.dns_names
        )
        source = f"local CA {crypto.describe(ca_certs[0])}"
        return _checked(cert, crypto.chain_pem(ca_certs), key, now, source)
    if not isinstance(issuer, SelfSignedIssuer):  # the Issuer union has three members
        raise TypeError(f"unknown issuer {type(issuer).__name__}")
    key = crypto.generate_key(issuer.key.type, issuer.key.size)
    cert = crypto.self_signed(
        key, _subject(issuer.subject, base_name), now, issuer.validity, issuer.dns_names
    )
    return _checked(cert, "", key, now, "self-signed")


def offered(rule: ServerCertificateRule) -> datetime | None:
    """For a directory issuer: the notBefore of its ``cert.pem`` (None if it cannot be
    read; ``issue`` then says why). None for the other issuers: they make new material."""
    if not isinstance(rule.issuer, DirectoryIssuer):
        return None
    try:
        cert = crypto.load_certificate(_read(rule.issuer.path / CERT_FILE), CERT_FILE)
    except InputError:
        return None
    return cert.not_valid_before_utc


def config_problems(rules: Sequence[Rule], now: datetime, *, files: bool = True) -> list[str]:
    """Every problem in the inputs of the enabled ``rules`` (``Rule.input_problems``: the
    certificate kinds' subjects, name formats and issuer files), each naming the rule and
    the field. With ``files=False`` no file is read: only what the policy itself says is
    checked (``validate --offline``, ``iam-policy``)."""
    problems: list[str] = []
    for rule in rules:
        if rule.enabled:
            found = rule.input_problems(now, files=files)
            problems += [f"rule {rule.name!r}: {p}" for p in found]
    return problems


def issuer_problems(issuer: Issuer, now: datetime, *, files: bool = True) -> list[str]:
    """The problems of a server-certificate rule's ``issuer``, each starting with its
    field: a subject that cannot work, files that are missing or IAM would reject (not
    read with ``files=False``)."""
    if isinstance(issuer, DirectoryIssuer):
        if not files:
            return []
        return [f"issuer.path: {p}" for p in _directory_problems(issuer.path, now)]
    problems = template_problems("issuer.subject", issuer.subject, name=SAMPLE)
    if isinstance(issuer, LocalCaIssuer) and files:
        problems += _ca_problems(issuer, now)
    return problems


# -- the issuers ------------------------------------------------------------------------


def _from_directory(directory: Path, now: datetime) -> Material:
    cert_path, key_path, chain_path = (directory / f for f in (CERT_FILE, KEY_FILE, CHAIN_FILE))
    body, key_pem, chain = _read(cert_path), _read(key_path), _read(chain_path)
    names = (str(cert_path), str(key_path), str(chain_path))
    problems = crypto_checks.material_problems(body, key_pem, chain, now, names=names)
    if problems:
        raise InputError("; ".join(problems))
    cert = crypto.load_certificate(body, str(cert_path))
    return Material(
        certificate=body,
        chain=chain if chain.strip() else "",
        private_key=SecretStr(key_pem),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint=crypto.fingerprint(cert),
        source=str(cert_path),
    )


def _load_ca(issuer: LocalCaIssuer) -> tuple[list[x509.Certificate], crypto.PrivateKey]:
    certs = crypto.load_certificates(_read(issuer.cert), str(issuer.cert))
    key = crypto.load_private_key(_read(issuer.key), str(issuer.key))
    if not crypto_checks.key_matches(certs[0], key):
        raise InputError(
            f"{issuer.key}: KeyPairMismatch: the CA key does not match the CA certificate "
            f"{issuer.cert}"
        )
    return certs, key


def _checked(
    cert: x509.Certificate, chain: str, key: crypto.PrivateKey, now: datetime, source: str
) -> Material:
    body = crypto.certificate_pem(cert)
    key_pem = crypto.private_key_pem(key)
    names = (f"new certificate ({source})", "new private key", f"chain ({source})")
    problems = crypto_checks.material_problems(body, key_pem, chain, now, names=names)
    if problems:
        raise InputError("; ".join(problems))
    return Material(
        certificate=body,
        chain=chain,
        private_key=SecretStr(key_pem),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint=crypto.fingerprint(cert),
        source=source,
    )


def _subject(template: str, name: str) -> x509.Name:
    try:
        return crypto.subject_name(template, name=name)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _read(path: Path) -> str:
    """The text of ``path``; ``InputError`` naming the file if it cannot be read."""
    try:
        return path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a PEM text file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None


# -- configuration checks ------------------------------------------------------------------


def template_problems(field: str, template: str, **fields: str) -> list[str]:
    """``[field: why]`` if the subject ``template`` cannot be filled with ``fields``."""
    try:
        crypto.subject_name(template, **fields)
    except ValueError as exc:
        return [f"{field}: {exc}"]
    return []


def name_format_problems(name_format: str) -> list[str]:
    """``[name_format: why]`` if ``name_format`` cannot name server-certificate versions."""
    try:
        sample = name_format.format(base=SAMPLE, date="20260101")
    except (KeyError, IndexError, ValueError) as exc:
        return [f"name_format: {name_format!r} uses an unknown field {exc} (known: base, date)"]
    if name_format.rstrip().endswith("{base}"):
        return [
            f"name_format: {name_format!r} ends with {{base}}: a second renewal on one day "
            "appends -2, which would read as part of the base; put {date} after {base}"
        ]
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@-")
    if not set(sample) <= allowed:
        return [
            f"name_format: {name_format!r} makes names IAM refuses (allowed: letters, "
            "digits and _+=,.@-)"
        ]
    return []


def _ca_problems(issuer: LocalCaIssuer, now: datetime) -> list[str]:
    try:
        certs, _ = _load_ca(issuer)
    except InputError as exc:
        field = "issuer.key" if str(exc).startswith(str(issuer.key)) else "issuer.cert"
        return [f"{field}: {exc}"]
    problems = crypto_checks.validity_problems(certs[0], now, str(issuer.cert))
    constraints = certs[0].extensions.get_extension_for_class
    try:
        is_ca = constraints(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        problems.append(f"{issuer.cert}: not a CA certificate (basicConstraints CA:TRUE missing)")
    problems += crypto_checks.chain_problems(certs[0], certs[1:], str(issuer.cert))
    return [f"issuer.cert: {p}" for p in problems]


def _directory_problems(directory: Path, now: datetime) -> list[str]:
    if not directory.expanduser().is_dir():
        return [f"{directory}: not a directory"]
    texts: list[str] = []
    problems: list[str] = []
    for name in (CERT_FILE, KEY_FILE, CHAIN_FILE):
        try:
            texts.append(_read(directory / name))
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        return problems
    body, key_pem, chain = texts
    names = (str(directory / CERT_FILE), str(directory / KEY_FILE), str(directory / CHAIN_FILE))
    return crypto_checks.material_problems(body, key_pem, chain, now, names=names)
