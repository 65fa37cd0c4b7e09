"""End to end: certificate rotation by the ``rotator`` CLI (a subprocess) against moto.

What a user would check: IAM's certificates (dates read from the bodies), the sink's
current entry and PEM files (the private key matches the certificate IAM holds), ``rotator
plan``'s reasons, exit codes, and that no private key reaches any output.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from cryptography import x509

from rotator import crypto, crypto_checks
from rotator.model import utcnow
from tests.support.certs import (
    DAY,
    assert_certificate_rotated_once,
    assert_key_matches,
    make_ca,
    make_leaf,
    server_certificates,
    server_rule,
    signing_rule,
    upload_server_certificate,
    write_ca_files,
    write_directory,
    write_policy,
)
from tests.support.cli import Cli
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

SELF_SIGNED = '{ type = "self-signed", dns_names = ["web.internal"], validity = "90d" }'


def seed_signer(sandbox: MotoSandbox, user: str = "signer", days_left: int | None = None) -> str:
    """A user with one signing certificate (expiring in ``days_left``); returns its ID."""
    sandbox.create_user(user, path="/signers/")
    leaf = make_leaf(user, not_after=utcnow() + DAY * days_left if days_left else None)
    made = sandbox.iam.upload_signing_certificate(UserName=user, CertificateBody=leaf.pem)
    time.sleep(1.1)  # strictly older than the sweep's start
    return str(made["Certificate"]["CertificateId"])


def test_a_signing_certificate_is_rotated_with_its_private_key_in_the_sink(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    write_policy(cli, signing_rule(cli.tmp))
    old = seed_signer(sandbox)
    result = cli("run", "--json")
    assert result.code == 0, result.stdout + result.stderr
    current = assert_certificate_rotated_once(
        cli, sandbox, "signer", "signing-certificate", original=old
    )
    cert = crypto.load_certificate(current["CertificateBody"], "sink")
    assert cert.subject.rfc4514_string() == "CN=signer"
    assert cert.not_valid_after_utc - utcnow() > 360 * DAY  # validity 365d by default
    assert [s for s, _ in cli.steps("signer")] == [
        "create",
        "verify",
        "promote",
        "deactivate",
        "delete",
    ]
    stem = cli.tmp / "secrets" / sandbox.account() / "signer" / "signing-certificate"
    assert Path(f"{stem}.cert.pem").read_text().strip() == current["CertificateBody"].strip()
    assert Path(f"{stem}.key.pem").read_text().strip() == current["PrivateKey"].strip()
    assert not Path(f"{stem}.chain.pem").exists()
    for suffix in (".json", ".cert.pem", ".key.pem"):
        assert stat.S_IMODE(Path(f"{stem}{suffix}").stat().st_mode) == 0o600


def seed_server(sandbox: MotoSandbox, cert_name: str, *, days_left: int) -> x509.Certificate:
    """A CA-signed server certificate at /lb/ that expires in ``days_left`` days."""
    ca = make_ca("Seed CA")
    leaf = make_leaf(
        cert_name,
        issuer=ca,
        not_before=utcnow() - (90 - days_left) * DAY,
        not_after=utcnow() + days_left * DAY,
    )
    upload_server_certificate(sandbox, cert_name, leaf, path="/lb/", chain=ca.pem)
    time.sleep(1.1)
    return leaf.cert


def issuer_for(kind: str, tmp: Path) -> tuple[str, x509.Certificate | None]:
    """The TOML of an issuer of ``kind`` and, for a directory, the certificate it holds."""
    if kind == "self-signed":
        return SELF_SIGNED, None
    ca = make_ca("Team CA")
    if kind == "local-ca":
        cert, key = write_ca_files(tmp / "ca", ca)
        return f'{{ type = "local-ca", cert = "{cert}", key = "{key}" }}', None
    leaf = make_leaf("web.example.com", issuer=ca, not_before=utcnow() - DAY / 24)
    directory = write_directory(tmp / "live" / "web", leaf, [ca])
    return f'{{ type = "directory", path = "{directory}" }}', leaf.cert


@pytest.mark.parametrize("issuer", ["self-signed", "local-ca", "directory"])
def test_a_server_certificate_expiring_in_10_days_is_renewed_and_the_old_one_retired(
    cli: Cli, sandbox: MotoSandbox, issuer: str
) -> None:
    toml, offered = issuer_for(issuer, cli.tmp)
    write_policy(cli, server_rule(cli.tmp, toml))
    old = seed_server(sandbox, "web", days_left=10)
    planned = {d["user"]: d for d in cli("plan", "--json").items()}
    assert planned["web"]["action"] == "rotate", planned
    assert "renew_before 30d" in planned["web"]["reason"] or issuer == "directory"

    result = cli("run", "--json")
    assert result.code == 0, result.stdout + result.stderr
    current = assert_certificate_rotated_once(
        cli, sandbox, "web", "server-certificate", original="web"
    )
    held = server_certificates(sandbox)
    (new_name,) = held
    assert new_name == f"web-{utcnow():%Y%m%d}"
    new = held[new_name]
    assert new.not_valid_after_utc > old.not_valid_after_utc + 30 * DAY
    if offered is not None:
        assert crypto.fingerprint(new) == crypto.fingerprint(offered)
    stem = cli.tmp / "secrets" / sandbox.account() / "web" / "server-certificate"
    assert_key_matches(Path(f"{stem}.cert.pem").read_text(), Path(f"{stem}.key.pem").read_text())
    chain = Path(f"{stem}.chain.pem")
    assert chain.exists() is (issuer != "self-signed")
    if chain.exists():
        leaf = crypto.load_certificate(current["CertificateBody"], "leaf")
        links = crypto.load_certificates(chain.read_text(), "chain")
        assert crypto_checks.chain_problems(leaf, links, "chain") == []
    meta = sandbox.iam.get_server_certificate(ServerCertificateName=new_name)
    assert meta["ServerCertificate"]["ServerCertificateMetadata"]["Path"] == "/lb/"


def test_a_server_certificate_expiring_in_90_days_is_left_alone_with_the_reason(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    write_policy(cli, server_rule(cli.tmp, SELF_SIGNED))
    cert = seed_server(sandbox, "api", days_left=90)
    (decision,) = cli("plan", "--json").items()
    assert decision["user"] == "api"
    assert decision["kind"] == "server-certificate"
    assert decision["action"] == "skip"
    assert decision["credential_id"] == "api"
    assert f"expires {cert.not_valid_after_utc:%Y-%m-%d}" in decision["reason"]
    assert "renew_before 30d" in decision["reason"]
    assert "due in 59d" in decision["reason"] or "due in 60d" in decision["reason"]
    # The table counts a skip in its caption; --all lists it, --wide with its whole reason.
    quiet = cli("plan")
    assert quiet.code == 0
    assert "1 decisions not listed (1 skip)" in " ".join(quiet.stdout.split())
    table = cli("plan", "--all", "--wide")
    assert table.code == 0
    assert "renew_before 30d" in " ".join(table.stdout.split())
    assert cli("run").code == 0
    assert list(server_certificates(sandbox)) == ["api"]


def test_a_certificate_still_attached_to_a_load_balancer_is_held_not_failed(
    cli: Cli, sandbox: MotoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto has no load balancer attachment: its IAM backend (in this process) is made to
    answer DeleteServerCertificate for "web" the way IAM does while an ELB uses it."""
    from moto.iam.exceptions import DeleteConflictException
    from moto.iam.models import IAMBackend

    original = IAMBackend.delete_server_certificate
    in_use = "Certificate: web is currently in use by arn:aws:elasticloadbalancing:lb/app/web"

    def attached(self: IAMBackend, name: str) -> None:
        if name == "web":
            raise DeleteConflictException(in_use)
        original(self, name)

    write_policy(cli, server_rule(cli.tmp, SELF_SIGNED))
    seed_server(sandbox, "web", days_left=10)
    monkeypatch.setattr(IAMBackend, "delete_server_certificate", attached)
    held = cli("run", "--json")
    assert held.code == 0, "held is a warning, not a failure"
    assert sorted(server_certificates(sandbox)) == ["web", f"web-{utcnow():%Y%m%d}"]
    event = [e for e in cli.audit_events() if e.get("outcome") == "held"][-1]
    assert event["step"] == "delete"
    assert event["level"] == "warning"
    assert "still in use, not deleted" in event["reason"]
    assert in_use in event["reason"]
    (status,) = cli("status", "--json").items()
    assert status["next_step"] == "delete"
    assert status["held_since"]

    monkeypatch.setattr(IAMBackend, "delete_server_certificate", original)  # detached
    assert cli("run").code == 0
    assert list(server_certificates(sandbox)) == [f"web-{utcnow():%Y%m%d}"]
    assert cli("status", "--json").items() == []


def test_no_private_key_reaches_output_logs_or_journal(cli: Cli, sandbox: MotoSandbox) -> None:
    write_policy(cli, signing_rule(cli.tmp), server_rule(cli.tmp, SELF_SIGNED))
    seed_signer(sandbox)
    seed_server(sandbox, "web", days_left=10)
    outputs = [cli("plan"), cli("run"), cli("run", "--json"), cli("status"), cli("history")]
    outputs.append(cli("history", "--json"))
    account = sandbox.account()
    lines: set[str] = set()
    for holder, kind in (("signer", "signing-certificate"), ("web", "server-certificate")):
        key = cli.sink_document(account, holder, kind)["current"]["PrivateKey"]
        assert "PRIVATE KEY-----" in key
        lines |= {line for line in key.splitlines() if not line.startswith("-----")}
    assert len(lines) > 40
    haystacks = {
        "audit": (cli.tmp / "audit.jsonl").read_text(),
        "journal": cli.journal_bytes().decode("latin-1"),
        **{f"stdout{i}": o.stdout for i, o in enumerate(outputs)},
        **{f"stderr{i}": o.stderr for i, o in enumerate(outputs)},
    }
    for where, text in haystacks.items():
        assert "PRIVATE KEY" not in text, f"a private key leaked into {where}"
        for line in lines:
            assert line not in text, f"a line of a private key leaked into {where}"


def test_a_directory_certificate_no_newer_than_iams_is_not_uploaded_again(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    """certbot has not renewed yet: the directory holds the very certificate IAM has."""
    ca = make_ca("ACME CA")
    leaf = make_leaf(
        "web", issuer=ca, not_before=utcnow() - 80 * DAY, not_after=utcnow() + 10 * DAY
    )
    upload_server_certificate(sandbox, "web", leaf, path="/lb/", chain=ca.pem)
    time.sleep(1.1)
    directory = write_directory(cli.tmp / "live", leaf, [ca])
    write_policy(cli, server_rule(cli.tmp, f'{{ type = "directory", path = "{directory}" }}'))
    result = cli("run", "--json")
    assert result.code == 1, "blocked: a human must renew with the ACME client"
    (web,) = [r for r in result.json()["results"] if r["user"] == "web"]
    assert web["action"] == "block"
    assert "is not newer than IAM's: renew it with the ACME client" in web["reason"]
    assert cli("history", "--json").items() == [], "no rotation was started"
    assert list(server_certificates(sandbox)) == ["web"], "nothing uploaded"


def _directory_case(tmp: Path, case: str) -> str:
    """An ACME directory broken in one way; returns the issuer's TOML."""
    ca = make_ca("ACME CA")
    leaf = make_leaf("web", issuer=ca)
    chain = [ca]
    if case == "expired certificate":
        leaf = make_leaf("web", issuer=ca, not_before=utcnow() - 91 * DAY, not_after=utcnow() - DAY)
    elif case == "wrong chain order":
        intermediate = make_ca("ACME Intermediate", parent=ca)
        leaf, chain = make_leaf("web", issuer=intermediate), [ca, intermediate]
    elif case == "oversize body":
        hosts = tuple(f"host-{n:04d}.web.example.com" for n in range(700))
        leaf = make_leaf("web", issuer=ca, dns_names=hosts)
    directory = write_directory(tmp / "live" / "web", leaf, chain)
    if case == "garbage PEM":
        (directory / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n")
    elif case == "mismatched key":
        (directory / "privkey.pem").write_text(make_leaf("other").key_pem)
    elif case == "missing issuer file":
        (directory / "privkey.pem").unlink()
    return f'{{ type = "directory", path = "{directory}" }}'


BAD_INPUTS = [
    ("garbage PEM", "issuer.path", "cert.pem: the PEM certificate does not parse"),
    ("mismatched key", "issuer.path", "privkey.pem: KeyPairMismatch"),
    ("expired certificate", "issuer.path", "cert.pem: certificate expired on"),
    ("wrong chain order", "issuer.path", "chain.pem: wrong chain order"),
    ("oversize body", "issuer.path", "IAM accepts at most 16384"),
    ("missing issuer file", "issuer.path", "privkey.pem: file not found"),
    ("missing CA key", "issuer.key", "ca.key: file not found"),
]


@pytest.mark.parametrize(("case", "field", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_certificate_inputs_exit_2_naming_the_problem_before_any_aws_call(
    cli: Cli, recorder: list[str], case: str, field: str, message: str
) -> None:
    if case == "missing CA key":
        cert, key = write_ca_files(cli.tmp / "ca", make_ca("Team CA"))
        key.unlink()
        issuer = f'{{ type = "local-ca", cert = "{cert}", key = "{key}" }}'
    else:
        issuer = _directory_case(cli.tmp, case)
    write_policy(cli, server_rule(cli.tmp, issuer))
    cli.env["COLUMNS"] = "2000"  # one problem per line, unwrapped
    for command in ("validate", "run", "plan"):
        result = cli(command)
        assert result.code == 2, (command, result.stdout, result.stderr)
        assert str(cli.config) in result.stderr
        (line,) = [ln for ln in result.stderr.splitlines() if message in ln]
        assert f"rule 'web': {field}: " in line
    assert recorder == [], "no AWS call before the inputs are valid"


def test_the_example_policy_validates_once_its_issuer_files_exist(cli: Cli) -> None:
    example = (Path(__file__).parents[2] / "config" / "certificates.toml").read_text()
    ca_cert, ca_key = write_ca_files(cli.tmp / "ca", make_ca("Team CA"))
    acme = make_ca("ACME")
    live = write_directory(cli.tmp / "live", make_leaf("www", issuer=acme), [acme])
    text = (
        example.replace("/etc/rotator/ca/ca.pem", str(ca_cert))
        .replace("/etc/rotator/ca/ca.key", str(ca_key))
        .replace("/etc/letsencrypt/live/www.example.com", str(live))
        .replace("/var/lib/rotator", str(cli.tmp))
        .replace("/var/log/rotator", str(cli.tmp))
    )
    cli.config.write_text(text)
    result = cli("validate")
    assert result.code == 0, result.stderr
    for name in ("signers: signing-certificate", "internal-lbs: server-certificate", "www: "):
        assert name in result.stdout


def test_an_operator_renews_a_server_certificate_now(cli: Cli, sandbox: MotoSandbox) -> None:
    """``rotator rotate --user BASE --kind server-certificate``: a certificate that is not
    due yet (90 days left) is renewed on request, through the normal protocol."""
    old = seed_server(sandbox, "web", days_left=90)
    write_policy(cli, server_rule(cli.tmp, SELF_SIGNED))
    result = cli("rotate", "--user", "web", "--kind", "server-certificate", "--yes", "--json")
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["result"]["state"] == "completed", result.stdout
    current = assert_certificate_rotated_once(
        cli, sandbox, "web", "server-certificate", original="web"
    )
    renewed = crypto.load_certificate(current["CertificateBody"], "sink")
    assert renewed.not_valid_after_utc > old.not_valid_after_utc - 80 * DAY
    unknown = cli("rotate", "--user", "api", "--kind", "server-certificate", "--yes")
    assert unknown.code == 2
    assert "no server-certificate api is selected" in unknown.stderr
