"""The checks IAM applies to certificate material, made before any upload (pure; no I/O).

IAM validates what it is given; moto does not. ``material_problems`` returns every problem
of an upload as a sentence naming the part it concerns: PEM that does not parse, a private
key that does not belong to the certificate (IAM's ``KeyPairMismatch``), a certificate
outside its validity window, a chain that does not verify in order, and sizes beyond IAM's
limits. Each check is a function of its inputs returning a list of problems ([] when all
is well), tested as tables.

The limits are those of IAM's API model (botocore ``iam/service-2.json``):
``certificateBodyType`` 16384 characters, ``privateKeyType`` 16384,
``certificateChainType`` 2097152. No problem quotes a private key or any PEM text.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from rotator.crypto import (
    PrivateKey,
    describe,
    load_certificate,
    load_certificates,
    load_private_key,
)
from rotator.errors import InputError

BODY_MAX = 16384  # characters of CertificateBody (server and signing certificates)
PRIVATE_KEY_MAX = 16384  # characters of PrivateKey
CHAIN_MAX = 2_097_152  # characters of CertificateChain


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """True if ``key`` is the private half of the certificate's public key."""
    mine = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return mine == theirs


def validity_problems(cert: x509.Certificate, now: datetime, what: str) -> list[str]:
    """The certificate must be valid now: not expired, not valid only from a later date."""
    if now >= cert.not_valid_after_utc:
        return [f"{what}: certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z"]
    if now < cert.not_valid_before_utc:
        return [f"{what}: certificate not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z"]
    return []


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _first_break(order: Sequence[x509.Certificate]) -> int | None:
    """The index of the first certificate not issued by the next one, or None."""
    for index, (child, parent) in enumerate(itertools.pairwise(order)):
        if not _issued_by(child, parent):
            return index
    return None


def chain_problems(
    leaf: x509.Certificate, chain: Sequence[x509.Certificate], what: str
) -> list[str]:
    """Each certificate must be issued by the next: the leaf by ``chain[0]``, ``chain[0]``
    by ``chain[1]``, and so on up to the root (as IAM and TLS clients expect)."""
    order = [leaf, *chain]
    index = _first_break(order)
    if index is None:
        return []
    child, parent = order[index], order[index + 1]
    child_name = "the certificate" if index == 0 else f"chain certificate {index}"
    hint = ""
    if len(chain) > 1 and _first_break([leaf, *reversed(chain)]) is None:
        hint = " (the chain is in reverse order: list the issuer of the certificate first)"
    return [
        f"{what}: wrong chain order: {child_name} ({describe(child)}) is not issued by "
        f"chain certificate {index + 1} ({describe(parent)}){hint}"
    ]


_LIMITS = (
    ("certificate body", BODY_MAX),
    ("private key", PRIVATE_KEY_MAX),
    ("certificate chain", CHAIN_MAX),
)


def size_problems(
    body: str,
    private_key: str | None,
    chain: str | None,
    names: tuple[str, str, str] = ("certificate", "private key", "chain"),
) -> list[str]:
    """IAM's length limits on the three PEM strings (None: not part of the upload)."""
    found = []
    for what, (label, limit), text in zip(names, _LIMITS, (body, private_key, chain), strict=True):
        if text is not None and len(text) > limit:
            found.append(f"{what}: {label} is {len(text)} characters; IAM accepts at most {limit}")
    return found


def material_problems(
    body: str,
    private_key: str | None,
    chain: str | None,
    now: datetime,
    *,
    names: tuple[str, str, str] = ("certificate", "private key", "chain"),
) -> list[str]:
    """Everything IAM would reject in an upload of (body, private_key, chain), each problem
    naming the part (``names`` label the three, e.g. file paths). Pure: no I/O."""
    cert_what, key_what, chain_what = names
    problems = size_problems(body, private_key, chain, names)
    try:
        cert = load_certificate(body, cert_what)
    except InputError as exc:
        return [*problems, str(exc)]
    problems += validity_problems(cert, now, cert_what)
    if private_key is not None:
        try:
            key = load_private_key(private_key, key_what)
        except InputError as exc:
            problems.append(str(exc))
        else:
            if not key_matches(cert, key):
                problems.append(
                    f"{key_what}: KeyPairMismatch: the private key does not match the public "
                    f"key of {cert_what}"
                )
    if chain and chain.strip():
        try:
            certs = load_certificates(chain, chain_what)
        except InputError as exc:
            return [*problems, str(exc)]
        problems += chain_problems(cert, certs, chain_what)
        for index, link in enumerate(certs, start=1):
            problems += validity_problems(link, now, f"{chain_what} (certificate {index})")
    return problems
