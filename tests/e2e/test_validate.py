"""``rotator validate`` through the real CLI (issue 14): every problem in one round, one
``error: FILE: FIELD: …`` line each and exit 2; warnings on stderr that leave the exit
code alone; ``--offline`` and ``iam-policy`` without the certificate files the policy
names; and ``plan`` exits 1 when AWS fails, as documented."""

from __future__ import annotations

import socket

import pytest

from tests.support.cli import Cli

pytestmark = pytest.mark.e2e


def cert_policy(cli: Cli, *, extra: str = "") -> str:
    """A policy whose server-certificate rule signs with a local CA that is not there."""
    ca = cli.tmp / "ca"
    return (
        f'[journal]\nurl = "sqlite:///{cli.tmp}/journal.db"\n{extra}\n'
        '[[rules]]\nname = "web"\nkind = "server-certificate"\n'
        f'issuer = {{ type = "local-ca", cert = "{ca}/ca.pem", key = "{ca}/ca.key" }}\n'
        'sink = { type = "memory", name = "{name}" }\n'
    )


def test_validate_reports_every_problem_at_once(cli: Cli) -> None:
    cli.config.write_text(
        cert_policy(cli, extra='lease_ttl = "10s"\n')
        + '\n[[rules]]\nname = "keys"\nkind = "access-key"\ndeactivate_afterr = "1d"\n'
        'sink = { type = "memory" }\n'
    )

    result = cli("validate")

    assert result.code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith(f"error: {cli.config}: ") for line in lines), lines
    said = "\n".join(lines)
    assert "rule 'keys': deactivate_afterr: unknown key; did you mean `deactivate_after`?" in said
    assert "journal.lease_ttl 10s is below 1m20s" in said
    assert f"rule 'web': issuer.cert: {cli.tmp}/ca/ca.pem: file not found" in said
    assert len(lines) == 3, said
    assert result.stdout == ""


def test_validate_warns_of_a_rule_that_can_never_apply_and_exits_0(cli: Cli) -> None:
    cli.write_policy(
        extra='\n[[rules]]\nname = "ci-app"\nkind = "access-key"\n'
        'select = { path_prefix = "/ci/app/" }\nsink = { type = "memory" }\n'
    )

    result = cli("validate")

    assert result.code == 0, result.stderr
    assert "ok:" in result.stdout
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"warning: {cli.config}: rule 'ci-app': never applies: ")
    assert "the earlier rule 'ci-keys' (access-key)" in warning


def test_validate_offline_and_iam_policy_need_no_certificate_files(cli: Cli) -> None:
    cli.config.write_text(cert_policy(cli))

    online = cli("validate")
    offline = cli("validate", "--offline")
    policy = cli("iam-policy")

    assert online.code == 2, online.stdout
    assert f"issuer.cert: {cli.tmp}/ca/ca.pem: file not found" in online.stderr
    assert offline.code == 0, offline.stderr
    assert "offline" in offline.stdout and "1 rule(s)" in offline.stdout
    assert policy.code == 0, policy.stderr
    actions = {
        action
        for statement in policy.json()["Statement"]
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }
    assert "iam:UploadServerCertificate" in actions
    assert not (cli.tmp / "ca").exists()


def test_validate_offline_still_refuses_a_bad_policy(cli: Cli) -> None:
    cli.config.write_text(cert_policy(cli).replace('kind = "server-certificate"', 'kind = "x"'))

    result = cli("validate", "--offline")

    assert result.code == 2
    assert "rule 'web': kind: unknown kind 'x'" in result.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("failure", ["http-500", "refused"])
def test_plan_exits_1_when_aws_fails(cli: Cli, failure: str, recorder: list[str]) -> None:
    """The documented contract: 0 ok, 1 failed (AWS or the journal), 2 bad input."""
    cli.write_policy(extra="\n[aws]\nmax_attempts = 1\nconnect_timeout = 2\nread_timeout = 5\n")
    if failure == "refused":
        cli.env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_closed_port()}"

    result = cli("plan", "--json")

    assert result.code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stdout == ""
    if failure == "http-500":
        assert recorder, "the call reached the failing endpoint"
