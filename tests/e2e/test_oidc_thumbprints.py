"""End to end: OIDC provider thumbprints kept by the ``rotator`` CLI (a subprocess) against
moto, for a provider served by a local HTTPS server with its own CA (root -> intermediate
-> leaf): the provider moves to a new intermediate, a sweep adds its thumbprint, a later one
(after ``retire_after``) removes the old; a chain that does not verify changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.model import utcnow
from tests.support.certs import POLICY_HEAD, SINK
from tests.support.cli import Cli
from tests.support.invariants import history
from tests.support.moto import MotoSandbox
from tests.support.oidc import OidcServer, ca, leaf, oidc_server, thumbprint

pytestmark = pytest.mark.e2e
RETIRE = timedelta(seconds=10)


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcServer]:
    with oidc_server(tmp_path) as server:
        yield server


def oidc_policy(cli: Cli, server: OidcServer, *, retire: str = "0s") -> None:
    cli.config.write_text(
        POLICY_HEAD.format(tmp=cli.tmp)
        + f"""
[[rules]]
name = "oidc"
kind = "oidc-thumbprint"
retire_after = "{retire}"
ca_bundle = "{server.ca_bundle}"
select = {{ names = ["127.0.0.1:*"] }}
sink = {SINK.format(tmp=cli.tmp)}
"""
    )


def register(sandbox: MotoSandbox, server: OidcServer, *thumbprints: str) -> str:
    made = sandbox.iam.create_open_id_connect_provider(
        Url=f"https://{server.url}",
        ThumbprintList=list(thumbprints),
        ClientIDList=["sts.amazonaws.com"],
    )
    time.sleep(1.1)  # strictly older than the sweep's start
    return str(made["OpenIDConnectProviderArn"])


def thumbprints(sandbox: MotoSandbox, arn: str) -> list[str]:
    got = sandbox.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    return [t.lower() for t in got["ThumbprintList"]]


def decisions(cli: Cli) -> list[dict[str, Any]]:
    result = cli("plan", "--json")
    assert result.code == 0, result.stdout + result.stderr
    return [d for d in result.items() if d["kind"] == "oidc-thumbprint"]


def providers_in_report(cli: Cli) -> list[dict[str, Any]]:
    result = cli("report", "--json")
    assert result.code == 0, result.stdout + result.stderr
    return result.json()["oidc_providers"]  # type: ignore[no-any-return]


def test_a_new_intermediate_is_added_then_the_old_thumbprint_retired(
    cli: Cli, sandbox: MotoSandbox, provider: OidcServer
) -> None:
    old = thumbprint(provider.intermediate)
    arn = register(sandbox, provider, old)
    oidc_policy(cli, provider, retire="10s")
    (decision,) = decisions(cli)
    assert decision["action"] == "skip" and old in decision["reason"]
    assert cli("run", "--json").code == 0
    assert thumbprints(sandbox, arn) == [old], "nothing to do while the chain matches"

    newer = ca("Test OIDC Intermediate 2", provider.root)
    provider.use(newer)
    new = thumbprint(newer)
    (decision,) = decisions(cli)
    assert decision["action"] == "rotate", decision
    assert new in decision["reason"] and "Intermediate 2" in decision["reason"]
    assert decision["user"] == provider.url and decision["credential_id"] == old
    (row,) = providers_in_report(cli)
    assert row["holder"] == provider.url and row["matches"] is False
    assert row["action"] == "rotate" and row["credentials"] == [old]

    started = utcnow()
    result = cli("run", "--json")
    finished = utcnow()
    assert result.code == 0, result.stdout + result.stderr
    assert thumbprints(sandbox, arn) == [old, new], "added beside the current one"
    doc = cli.sink_document(sandbox.account(), provider.url, "oidc-thumbprint")
    assert doc["current"]["CredentialId"] == new
    assert doc["current"]["Thumbprint"] == new
    (row,) = providers_in_report(cli)
    assert row["matches"] is True and old in row["reason"], "the old one matches nothing"
    status = cli("status", "--json")
    assert status.code == 0 and provider.url in status.stdout, status.stdout

    (decision,) = decisions(cli)  # the old one goes retire_after after the promotion
    assert decision["rotation_id"] and decision["credential_id"] == old
    due = datetime.fromisoformat(decision["due_at"])
    assert started + RETIRE <= due <= finished + RETIRE
    if utcnow() < due:
        assert decision["action"] == "wait", decision
        assert cli("run", "--json").code == 0
        if utcnow() < due:
            assert thumbprints(sandbox, arn) == [old, new], "kept until retire_after"
    time.sleep(max(0.0, (due - utcnow()).total_seconds() + 0.2))
    result = cli("run", "--json")
    assert result.code == 0, result.stdout + result.stderr
    assert thumbprints(sandbox, arn) == [new], "the unmatched one is removed"

    (record,) = [r for r in history(cli) if r["kind"] == "oidc-thumbprint"]
    assert record["state"] == "completed"
    assert record["credential_id"] == old and record["new_credential_id"] == new
    steps = [
        (e["step"], e["outcome"])
        for e in cli.audit_events()
        if e.get("kind") == "oidc-thumbprint" and e.get("event") == "rotation.step"
    ]
    assert ("create", "done") in steps and ("delete", "done") in steps, steps
    (decision,) = decisions(cli)
    assert decision["action"] == "skip"


@pytest.mark.parametrize("how", ["self-signed leaf", "wrong host"])
def test_a_chain_that_does_not_verify_is_refused_and_nothing_changes(
    cli: Cli, sandbox: MotoSandbox, provider: OidcServer, how: str
) -> None:
    old = thumbprint(provider.intermediate)
    arn = register(sandbox, provider, old)
    oidc_policy(cli, provider)
    if how == "self-signed leaf":
        provider.use(None, server_leaf=leaf("oidc.test", None))
    else:
        provider.jwks_host = "localhost"
    (decision,) = decisions(cli)
    assert decision["action"] == "block", decision
    assert "does not verify" in decision["reason"]
    result = cli("run", "--json")
    assert result.code == 1, "a blocked provider is not ok"
    (row,) = providers_in_report(cli)
    assert row["matches"] is False and row["action"] == "block"
    assert thumbprints(sandbox, arn) == [old]
    assert [r for r in history(cli) if r["kind"] == "oidc-thumbprint"] == []


def test_iam_policy_grants_the_oidc_calls(
    cli: Cli, sandbox: MotoSandbox, provider: OidcServer
) -> None:
    oidc_policy(cli, provider)
    result = cli("iam-policy")
    assert result.code == 0, result.stderr
    for action in (
        "iam:GetOpenIDConnectProvider",
        "iam:UpdateOpenIDConnectProviderThumbprint",
        "iam:ListOpenIDConnectProviders",
    ):
        assert action in result.stdout
