"""End to end over an organization: ``rotator plan/run/status/history/report`` with
``[accounts]``, as a subprocess against the moto server (which runs in this process: the
accounts, roles and users are seeded through its backends)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import pytest

from tests.support.asff import ASFF_SCHEMA
from tests.support.cli import Cli
from tests.support.moto import MotoSandbox
from tests.support.org import ROLE, Org, assume_role_needs_the_role

pytestmark = pytest.mark.e2e

POLICY = """\
[journal]
url = "sqlite:///{tmp}/journal.db"
[audit]
file = "{tmp}/audit.jsonl"
stream = "none"
[verify]
attempts = 3
initial_delay = "1s"
[accounts]
role_name = "{role}"
external_id = "rotator-e2e"
[accounts.organization]
ous = ["/Workloads"]
[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "90d"
select = {{ path_prefix = "/ci/" }}
sink = {{ type = "file", path = "{tmp}/secrets/{{account}}/{{user}}.json" }}
"""


@pytest.fixture
def org(cli: Cli, sandbox: MotoSandbox) -> Iterator[Org]:
    org = Org(sandbox).create()
    org.account("prod", "/Workloads/Prod")
    org.account("dev", "/Workloads")
    org.account("norole", "/Workloads/Prod/Old", role=False)
    org.account("outside", "/Sandbox")
    for name in org.accounts:
        org.user(org.accounts[name], "ci-app")
    cli.config.write_text(POLICY.format(tmp=cli.tmp, role=ROLE))
    with assume_role_needs_the_role():
        yield org


def test_run_rotates_every_account_and_reports_the_one_without_a_role(cli: Cli, org: Org) -> None:
    ids = org.accounts
    before = {name: org.keys(ids[name], "ci-app") for name in ids}
    plan = cli("plan", "--json")
    assert plan.code == 1, plan.stderr  # the norole account could not be planned
    planned = plan.json()
    by_account = {r["account"]: r for r in planned["items"]}
    assert by_account[ids["prod"]]["action"] == "rotate"
    assert by_account[ids["prod"]]["account_name"] == "prod"
    assert ids["norole"] not in by_account
    (failed,) = planned["failed_accounts"]
    assert (failed["account"], failed["error"]) == (ids["norole"], "AccessDenied")
    assert ids["outside"] not in by_account

    result = cli("run", "--json")
    assert result.code == 1, result.stderr
    summary = result.json()
    assert summary["kind"] == "org-sweep"
    accounts = {a["id"]: a for a in summary["accounts"]}
    assert set(accounts) == {ids["prod"], ids["dev"], ids["norole"]}
    assert accounts[ids["norole"]]["outcome"] == "account-failed"
    assert accounts[ids["norole"]]["error"] == "AccessDenied"
    assert summary["counts"]["accounts_failed"] == 1
    assert summary["counts"]["rotated"] == 2
    for name in ("prod", "dev"):
        assert accounts[ids[name]]["ok"], accounts[ids[name]]
        account = ids[name]
        doc = json.loads((cli.tmp / "secrets" / account / "ci-app.json").read_text())
        key = doc["current"]
        assert org.keys(account, "ci-app")[key["AccessKeyId"]] == "Active"
        arn = org.sandbox.caller_arn(key["AccessKeyId"], key["SecretAccessKey"])
        assert arn == f"arn:aws:iam::{account}:user/ci/ci-app"
    for name in ("norole", "outside"):
        assert org.keys(ids[name], "ci-app") == before[name]
    events = [json.loads(line) for line in (cli.tmp / "audit.jsonl").read_text().splitlines()]
    failed = [e for e in events if e["event"] == "account.failed"]
    assert {e["account"] for e in failed} == {ids["norole"]}  # by the plan and the run
    assert all(e["error"] == "AccessDenied" for e in failed)
    steps = [e for e in events if e["event"] == "rotation.step"]
    assert {e["account"] for e in steps} == {ids["prod"], ids["dev"]}

    table = cli("run", "--dry-run")
    assert table.code == 1
    assert f"prod ({ids['prod']})" in table.stdout
    assert f"account norole ({ids['norole']}): FAILED (AccessDenied)" in table.stdout

    status = cli("status", "--json", "--account", ids["prod"])
    assert status.code == 0, status.stderr
    assert {r["account"] for r in status.items()} == {ids["prod"]}
    history = cli("history", "--json", "--ou", "/Workloads/Prod")
    assert history.code == 0, history.stderr
    assert {r["account"] for r in history.items()} == {ids["prod"]}
    shown = cli("history")
    assert "account" in shown.stdout and ids["dev"] in shown.stdout
    assert cli("status", "--ou", "Workloads").code == 2  # neither an OU ID nor a path

    only = cli("run", "--json", "--account", ids["dev"])
    assert only.code == 0, only.stderr
    assert [a["id"] for a in only.json()["accounts"]] == [ids["dev"]]


def test_report_gives_per_account_totals(cli: Cli, org: Org) -> None:
    ids = org.accounts
    report = cli("report", "--json", "--benchmark", "cis-v4.0")
    assert report.code == 1, report.stderr  # the account without a role
    data = report.json()
    totals = {a["id"]: a for a in data["accounts"]}
    assert totals[ids["prod"]]["credentials"] == 1
    assert totals[ids["prod"]]["failures"]["1.14"] == 1
    assert totals[ids["norole"]]["error"] == "AccessDenied"
    assert data["failures"]["1.14"] == 2
    picked = cli("report", "--account", ids["dev"])
    assert picked.code == 0, picked.stderr
    assert "Compliance per account" in picked.stdout and "dev" in picked.stdout


def test_report_asff_is_one_array_each_finding_with_its_own_account(cli: Cli, org: Org) -> None:
    """Every surveyed account's findings in one array, each naming its account (and that
    account's default product: Security Hub takes a finding only from its own account);
    the account without a role has none, and the exit code says so."""
    ids = org.accounts
    report = cli("report", "--output", "asff")
    assert report.code == 1, report.stderr  # the account without a role
    findings = json.loads(report.stdout)
    for finding in findings:
        jsonschema.validate(finding, ASFF_SCHEMA)
    # One key each (ci-app, 2.11 and 2.12 in cis-v7.0) in prod and dev.
    assert sorted(f["AwsAccountId"] for f in findings) == sorted([ids["prod"], ids["dev"]] * 2)
    for finding in findings:
        account = finding["AwsAccountId"]
        assert finding["ProductArn"].endswith(f":{account}:product/{account}/default")
        assert finding["Id"].startswith(f"rotator/{account}/ci-app/")
    assert len({f["Id"] for f in findings}) == len(findings)


def test_rotate_finds_the_account_of_a_leaked_key(cli: Cli, org: Org) -> None:
    account = org.accounts["prod"]
    (leaked,) = org.keys(account, "ci-app")
    done = cli("rotate", "--access-key-id", leaked, "--emergency", "--yes", "--json")
    assert done.code == 0, done.stderr
    report = done.json()["result"]
    assert (report["account"], report["user"]) == (account, "ci-app")
    first = report["steps"][0]
    assert (first["step"], first["outcome"], first["credential_id"]) == (
        "deactivate",
        "done",
        leaked,
    )
    assert leaked not in org.keys(account, "ci-app")
    outside = org.keys(org.accounts["outside"], "ci-app")  # /Sandbox: not covered
    (key,) = outside
    refused = cli("rotate", "--access-key-id", key, "--emergency", "--yes")
    assert refused.code == 2 and "not among the accounts" in refused.stderr
    assert org.keys(org.accounts["outside"], "ci-app") == outside
    by_user = cli("rotate", "--user", "ci-app", "--account", org.accounts["dev"], "--yes")
    assert by_user.code == 0, by_user.stderr
    assert len(org.keys(org.accounts["dev"], "ci-app")) == 2
