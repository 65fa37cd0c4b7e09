"""``rotator.issuers``: where a new server certificate comes from, and the configuration
check that rejects bad issuer inputs before any AWS call (real files in ``tmp_path``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from rotator import crypto, crypto_checks, issuers
from rotator.errors import InputError
from rotator.kinds import AnyRule
from rotator.kinds.server_certificate import ServerCertificateRule
from rotator.model import utcnow
from tests.support.certs import DAY, Issued, make_ca, make_leaf, write_ca_files, write_directory

NOW = utcnow()
SINK = {"type": "memory", "name": "{account}/{name}/{kind}"}
RULES: TypeAdapter[Any] = TypeAdapter(AnyRule)


def server_rule(issuer: dict[str, Any], **extra: Any) -> ServerCertificateRule:
    rule = RULES.validate_python(
        {"name": "web", "kind": "server-certificate", "issuer": issuer, "sink": SINK, **extra}
    )
    assert isinstance(rule, ServerCertificateRule)
    return rule


def test_self_signed_makes_a_checked_certificate_for_the_base_name() -> None:
    rule = server_rule({"type": "self-signed", "dns_names": ["a.internal"], "validity": "30d"})
    made = issuers.issue(rule, "api", NOW)
    cert = crypto.load_certificate(made.certificate, "made")
    assert cert.subject.rfc4514_string() == "CN=api"
    assert made.chain == ""
    assert made.not_after == (NOW + 30 * DAY).replace(microsecond=0)
    assert made.fingerprint == crypto.fingerprint(cert)
    key = crypto.load_private_key(made.private_key.get_secret_value(), "key")
    assert crypto_checks.key_matches(cert, key)
    assert "PRIVATE" not in repr(made)


def test_local_ca_signs_with_the_teams_ca_and_chains_up_through_its_bundle(tmp_path: Path) -> None:
    root = make_ca("Root")
    intermediate = make_ca("Team CA", parent=root)
    cert_path, key_path = write_ca_files(tmp_path, intermediate)
    cert_path.write_text(intermediate.pem + root.pem)  # a bundle: the CA, then its issuer
    rule = server_rule(
        {
            "type": "local-ca",
            "cert": str(cert_path),
            "key": str(key_path),
            "key_spec": {"type": "ec"},
        }
    )
    made = issuers.issue(rule, "web", NOW)
    cert = crypto.load_certificate(made.certificate, "made")
    chain = crypto.load_certificates(made.chain, "chain")
    assert [c.subject for c in chain] == [intermediate.cert.subject, root.cert.subject]
    assert crypto_checks.chain_problems(cert, chain, "chain") == []
    assert made.source == "local CA CN=Team CA"
    assert "EC PRIVATE KEY" in made.private_key.get_secret_value()


def test_directory_hands_over_what_the_acme_client_left(tmp_path: Path) -> None:
    ca = make_ca("ACME")
    leaf = make_leaf("web", issuer=ca, not_before=NOW - DAY / 2)
    directory = write_directory(tmp_path / "live", leaf, [ca])
    rule = server_rule({"type": "directory", "path": str(directory)})
    made = issuers.issue(rule, "web", NOW)
    assert made.certificate == leaf.pem
    assert made.chain == ca.pem
    assert made.private_key.get_secret_value() == leaf.key_pem
    assert issuers.offered(rule) == leaf.cert.not_valid_before_utc
    (directory / "chain.pem").write_text("")
    assert issuers.issue(rule, "web", NOW).chain == "", "an empty chain.pem means no chain"


def test_offered_is_none_but_for_a_readable_directory(tmp_path: Path) -> None:
    assert issuers.offered(server_rule({"type": "self-signed"})) is None
    assert issuers.offered(server_rule({"type": "directory", "path": str(tmp_path)})) is None


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: (d / "cert.pem").unlink(), "cert.pem: file not found"),
        (lambda d: (d / "privkey.pem").write_text("junk"), "privkey.pem: no PEM private key"),
        (lambda d: (d / "cert.pem").write_bytes(b"\xff\xfe"), "cert.pem: not a PEM text file"),
    ],
)
def test_directory_problems_name_the_file(
    tmp_path: Path, break_it: Callable[[Path], object], message: str
) -> None:
    directory = write_directory(tmp_path, make_leaf("web"), [])
    break_it(directory)
    with pytest.raises(InputError, match=message):
        issuers.issue(server_rule({"type": "directory", "path": str(directory)}), "web", NOW)


# -- the configuration check --------------------------------------------------------------


def _ca(tmp: Path, ca: Issued | None = None) -> dict[str, Any]:
    cert, key = write_ca_files(tmp / "ca", ca or make_ca("Team CA"))
    return {"type": "local-ca", "cert": str(cert), "key": str(key)}


def _leaf_as_ca(tmp: Path) -> dict[str, Any]:
    return _ca(tmp, make_leaf("not a CA"))


def _expired_ca(tmp: Path) -> dict[str, Any]:
    return _ca(tmp, make_leaf("old", not_before=NOW - 9 * DAY, not_after=NOW - DAY))


def _mismatched_ca(tmp: Path) -> dict[str, Any]:
    issuer = _ca(tmp)
    Path(issuer["key"]).write_text(make_ca("Other").key_pem)
    return issuer


CONFIG: list[tuple[str, Callable[[Path], dict[str, Any]], dict[str, Any], list[str]]] = [
    ("self-signed is fine", lambda t: {"type": "self-signed"}, {}, []),
    ("local CA is fine", _ca, {}, []),
    (
        "bad subject",
        lambda t: {"type": "self-signed", "subject": "CN={user}"},
        {},
        ["issuer.subject: subject 'CN={user}': unknown field 'user'"],
    ),
    (
        "bad name_format",
        lambda t: {"type": "self-signed"},
        {"name_format": "{base}-{date}-{when}"},
        ["name_format: '{base}-{date}-{when}' uses an unknown field 'when'"],
    ),
    (
        "name_format IAM refuses",
        lambda t: {"type": "self-signed"},
        {"name_format": "{base} {date}"},
        ["name_format: '{base} {date}' makes names IAM refuses"],
    ),
    (
        "name_format ending with the base",
        lambda t: {"type": "self-signed"},
        {"name_format": "{date}-{base}"},
        ["name_format: '{date}-{base}' ends with {base}"],
    ),
    ("CA is a leaf", _leaf_as_ca, {}, ["issuer.cert: ", "not a CA certificate"]),
    ("CA expired", _expired_ca, {}, ["issuer.cert: ", "certificate expired on"]),
    ("CA key mismatch", _mismatched_ca, {}, ["issuer.key: ", "KeyPairMismatch"]),
    (
        "no such directory",
        lambda t: {"type": "directory", "path": str(t / "nope")},
        {},
        ["issuer.path: ", "nope: not a directory"],
    ),
    (
        "empty directory",
        lambda t: {"type": "directory", "path": str(t)},
        {},
        ["cert.pem: file not found", "privkey.pem: file not found", "chain.pem: file not found"],
    ),
]


@pytest.mark.parametrize(
    ("case", "issuer", "extra", "expected"), CONFIG, ids=[c[0] for c in CONFIG]
)
def test_config_problems_name_the_rule_and_the_field(
    tmp_path: Path,
    case: str,
    issuer: Callable[[Path], dict[str, Any]],
    extra: dict[str, Any],
    expected: list[str],
) -> None:
    rule = server_rule(issuer(tmp_path), **extra)
    problems = issuers.config_problems([rule], NOW)
    if not expected:
        assert problems == []
    assert all(p.startswith("rule 'web': ") for p in problems)
    text = " | ".join(problems)
    for fragment in expected:
        assert fragment in text, text


def test_disabled_rules_and_other_kinds_are_not_checked(tmp_path: Path) -> None:
    missing = {"type": "directory", "path": str(tmp_path / "nope")}
    disabled = server_rule(missing, enabled=False)
    keys = RULES.validate_python({"name": "k", "kind": "access-key", "sink": SINK})
    assert issuers.config_problems([disabled, keys], NOW) == []


def test_a_signing_rule_subject_is_checked() -> None:
    rule = RULES.validate_python(
        {"name": "s", "kind": "signing-certificate", "subject": "CN={nobody}", "sink": SINK}
    )
    (problem,) = issuers.config_problems([rule], NOW)
    assert problem.startswith("rule 's': subject: subject 'CN={nobody}': unknown field")
