"""``rotator.crypto``: making key pairs and certificates, and every check IAM would apply,
as tables of inputs and the problem each must produce."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from rotator import crypto, crypto_checks
from rotator.errors import InputError
from rotator.model import utcnow
from tests.support.certs import DAY, Issued, make_ca, make_leaf

NOW = utcnow()


@pytest.mark.parametrize(
    ("key_type", "size", "header"),
    [("rsa", 2048, "BEGIN RSA PRIVATE KEY"), ("ec", 2048, "BEGIN EC PRIVATE KEY")],
)
def test_keys_are_pem_in_the_traditional_format_iam_accepts(
    key_type: str, size: int, header: str
) -> None:
    key = crypto.generate_key(key_type, size)
    pem = crypto.private_key_pem(key)
    assert header in pem
    assert crypto.load_private_key(pem, "k").public_key() == key.public_key()


def test_rsa_key_size_is_honoured() -> None:
    key = crypto.generate_key("rsa", 3072)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        ("CN={user}", {"user": "ci-signer"}, "CN=ci-signer"),
        ("CN={user},O=Example Corp", {"user": "a"}, "CN=a,O=Example Corp"),
        ("CN={name}", {"name": "a,b+c=d"}, "CN=a\\,b\\+c=d"),
        ("CN={name}", {"name": " lead"}, "CN=\\ lead"),
    ],
)
def test_subjects_are_rfc4514_with_the_holder_name_escaped(
    template: str, fields: dict[str, str], expected: str
) -> None:
    subject = crypto.subject_name(template, **fields)
    assert subject.rfc4514_string() == expected
    value = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert value == next(iter(fields.values()))


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("CN={account}", "unknown field 'account'"),
        ("CN={user", "unknown field"),
        ("not a name", "is not an RFC 4514 name"),
        ("", "is empty"),
    ],
)
def test_bad_subjects_say_what_is_wrong(template: str, problem: str) -> None:
    with pytest.raises(ValueError, match="subject") as caught:
        crypto.subject_name(template, user="u")
    assert problem in str(caught.value)


def test_a_self_signed_certificate_matches_its_key_and_dates() -> None:
    key = crypto.generate_key()
    subject = crypto.subject_name("CN={name}", name="web")
    cert = crypto.self_signed(key, subject, NOW, timedelta(days=90), ["web.internal"])
    assert crypto_checks.key_matches(cert, key)
    assert cert.not_valid_before_utc == (NOW - crypto.BACKDATE).replace(microsecond=0)
    assert cert.not_valid_after_utc == (NOW + timedelta(days=90)).replace(microsecond=0)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["web.internal"]
    assert (
        crypto_checks.material_problems(
            crypto.certificate_pem(cert), crypto.private_key_pem(key), None, NOW
        )
        == []
    )


def test_a_ca_signed_certificate_verifies_and_never_outlives_its_ca() -> None:
    ca = make_ca("Team CA", days=30)
    key = crypto.generate_key()
    cert = crypto.ca_signed(key, crypto.subject_name("CN=web"), NOW, 90 * DAY, ca.cert, ca.key)
    assert crypto_checks.chain_problems(cert, [ca.cert], "chain") == []
    assert cert.not_valid_after_utc == ca.cert.not_valid_after_utc


# -- the checks, as a table -----------------------------------------------------------------

CA = make_ca("Root CA")
INTERMEDIATE = make_ca("Intermediate CA", parent=CA)
GOOD = make_leaf("web", issuer=INTERMEDIATE)
Case = Callable[[], tuple[str, str | None, str | None]]  # body, key, chain


def _case(leaf: Issued, chain: list[Issued], key: str | None = None) -> Case:
    return lambda: (leaf.pem, leaf.key_pem if key is None else key, "".join(c.pem for c in chain))


def _expired() -> Issued:
    return make_leaf("web", issuer=INTERMEDIATE, not_before=NOW - 10 * DAY, not_after=NOW - DAY)


def _future() -> Issued:
    return make_leaf("web", issuer=INTERMEDIATE, not_before=NOW + DAY, not_after=NOW + 9 * DAY)


def _big() -> Issued:
    return make_leaf("web", dns_names=tuple(f"h{n:04d}.example.com" for n in range(800)))


CHECKS: list[tuple[str, Case, list[str]]] = [
    ("good", _case(GOOD, [INTERMEDIATE, CA]), []),
    ("good without the root", _case(GOOD, [INTERMEDIATE]), []),
    ("self-signed, no chain", _case(make_leaf("x"), []), []),
    ("garbage body", lambda: ("hello", GOOD.key_pem, None), ["cert: no PEM certificate found"]),
    (
        "garbage inside PEM markers",
        lambda: ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", None, None),
        ["cert: the PEM certificate does not parse"],
    ),
    (
        "two certificates in the body",
        lambda: (GOOD.pem + INTERMEDIATE.pem, GOOD.key_pem, None),
        ["cert: holds 2 certificates"],
    ),
    (
        "mismatched key",
        _case(GOOD, [INTERMEDIATE], key=make_leaf("other").key_pem),
        ["key: KeyPairMismatch: the private key does not match the public key of cert"],
    ),
    ("garbage key", _case(GOOD, [], key="nope"), ["key: no PEM private key found"]),
    ("expired", _case(_expired(), [INTERMEDIATE]), ["cert: certificate expired on"]),
    ("not yet valid", _case(_future(), [INTERMEDIATE]), ["cert: certificate not valid until"]),
    (
        "chain in reverse order",
        _case(GOOD, [CA, INTERMEDIATE]),
        ["chain: wrong chain order", "(the chain is in reverse order"],
    ),
    (
        "chain missing the issuer",
        _case(GOOD, [CA]),
        ["chain: wrong chain order: the certificate (CN=web) is not issued by chain certificate 1"],
    ),
    (
        "garbage chain",
        lambda: (GOOD.pem, GOOD.key_pem, "-----BEGIN CERTIFICATE-----\nAAAA\n"),
        ["chain: the PEM certificate does not parse"],
    ),
    ("oversize body", _case(_big(), []), ["cert: certificate body is", "at most 16384"]),
    (
        "oversize chain",
        lambda: (
            GOOD.pem,
            GOOD.key_pem,
            INTERMEDIATE.pem * (crypto_checks.CHAIN_MAX // len(INTERMEDIATE.pem) + 1),
        ),
        ["chain: certificate chain is", "at most 2097152"],
    ),
]


@pytest.mark.parametrize(("case", "material", "expected"), CHECKS, ids=[c[0] for c in CHECKS])
def test_material_is_checked_as_iam_checks_it(
    case: str, material: Case, expected: list[str]
) -> None:
    body, key, chain = material()
    problems = crypto_checks.material_problems(
        body, key, chain, NOW, names=("cert", "key", "chain")
    )
    text = " | ".join(problems)
    if not expected:
        assert problems == []
    for fragment in expected:
        assert fragment in text, text
    if key and "PRIVATE KEY" in key:
        for line in key.splitlines()[1:-1]:
            assert line not in text, "a problem quoted the private key"


@pytest.mark.parametrize(
    ("body", "key", "chain", "count"),
    [
        ("x" * 16384, "k" * 16384, "c" * 2_097_152, 0),
        ("x" * 16385, None, None, 1),
        ("x", "k" * 16385, None, 1),
        ("x", None, "c" * 2_097_153, 1),
        ("x" * 16385, "k" * 16385, "c" * 2_097_153, 3),
    ],
)
def test_size_limits_are_iams(body: str, key: str | None, chain: str | None, count: int) -> None:
    assert len(crypto_checks.size_problems(body, key, chain)) == count


def test_an_encrypted_or_foreign_key_is_named_not_quoted() -> None:
    key = crypto.generate_key()
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()
    with pytest.raises(InputError, match=r"k\.pem: the private key is encrypted") as caught:
        crypto.load_private_key(encrypted, "k.pem")
    assert encrypted.splitlines()[1] not in str(caught.value)
    edwards = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InputError, match="IAM accepts RSA or EC keys"):
        crypto.load_private_key(edwards.decode(), "k.pem")


def test_fingerprints_identify_a_certificate_however_its_pem_is_wrapped() -> None:
    pem = GOOD.pem
    assert crypto.pem_fingerprint(pem) == crypto.fingerprint(GOOD.cert)
    assert crypto.pem_fingerprint(pem.rstrip() + "\r\n\r\n") == crypto.fingerprint(GOOD.cert)
    assert crypto.pem_fingerprint("garbage") == ""
    assert crypto.fingerprint(GOOD.cert) != crypto.fingerprint(CA.cert)
