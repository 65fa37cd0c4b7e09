"""End to end against the moto server: console passwords, SSH public keys, unused
credentials and ``rotator report``, driving the real CLI as a subprocess.

moto does not enforce the password policy (rotator's passwords are checked here against
rotator's own check and the in-memory IAM's independent one), never updates a password's
change date, reports a fixed GeneratedTime for the credential report and a fixed (2012)
expiration for every server certificate: see docs/passwords-ssh-service.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from rotator import passwords
from rotator.model import utcnow
from rotator.testing.memory_profiles import _policy_violation
from tests.support import iam_seed
from tests.support.cli import Cli
from tests.support.faults import FaultProxy
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

POLICY = {
    "MinimumPasswordLength": 32,
    "RequireSymbols": True,
    "RequireNumbers": True,
    "RequireUppercaseCharacters": True,
    "RequireLowercaseCharacters": True,
    "PasswordReusePrevention": 5,
}
CONSOLE_RULE = """\
name = "console"
kind = "login-profile"
max_age = "90d"
select = {{ path_prefix = "/ops/" }}
sink = {sink}
"""
SSH_RULE = """\
name = "git"
kind = "ssh-public-key"
max_age = "90d"
deactivate_after = "0s"
delete_after = "0s"
key_size = 2048
sink = {sink}
"""
UNUSED_RULES = (
    """\
name = "idle-keys"
kind = "access-key"
max_age = "365d"
disable_unused_after = "45d"
sink = {sink}
""",
    """\
name = "idle-consoles"
kind = "login-profile"
max_age = "365d"
disable_unused_after = "45d"
sink = {sink}
""",
)


@pytest.fixture
def proxy(aws_env: str) -> Iterator[FaultProxy]:
    with FaultProxy(aws_env) as proxy:
        yield proxy


def leaks(cli: Cli, outputs: list[str], secrets: set[str]) -> list[str]:
    """Where any of ``secrets`` appears: audit log, journal, command output."""
    haystacks = {
        "audit": (cli.tmp / "audit.jsonl").read_text(),
        "journal": cli.journal_bytes().decode("latin-1"),
        **{f"output{i}": text for i, text in enumerate(outputs)},
    }
    return [name for name, text in haystacks.items() for s in secrets if s in text]


def test_a_console_password_is_rotated_to_the_account_policy_once(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    sandbox.iam.update_account_password_policy(**POLICY)
    iam_seed.console_user(sandbox, "ops-alice", path="/ops/", days_old=100)
    sandbox.iam.create_user(UserName="ops-robot", Path="/ops/")  # no console access
    iam_seed.write_rules(cli, CONSOLE_RULE)
    account = sandbox.account()

    plan = cli("plan", "--json")
    assert plan.code == 0, plan.stderr
    decisions = {d["user"]: d for d in plan.items()}
    assert decisions["ops-alice"]["action"] == "rotate"
    assert (
        "console password ops-alice is 100d old (max_age 90d)" in decisions["ops-alice"]["reason"]
    )
    assert (decisions["ops-robot"]["action"], decisions["ops-robot"]["reason"]) == (
        "skip",
        "no console password",
    )

    first = cli("run", "--json")
    assert first.code == 0, first.stdout + first.stderr
    assert first.json()["counts"]["completed"] == 1
    assert cli.steps("ops-alice") == [("create", "done"), ("verify", "done"), ("promote", "done")]
    doc = cli.sink_document(account, "ops-alice", "login-profile")
    assert doc["pending"] is None and doc["previous"] is None
    password = doc["current"]["Password"]
    assert iam_seed.password_of(sandbox, "ops-alice") == password
    assert iam_seed.user(sandbox, "ops-alice").password_reset_required is True
    policy = passwords.PasswordPolicy.from_iam(POLICY)
    assert passwords.problems(password, policy) == [] and len(password) == 32
    assert _policy_violation(password, POLICY) is None, "IAM would accept it (moto does not check)"
    (record,) = cli("history", "--json").items()
    assert record["state"] == "completed" and record["credential_id"] is None
    assert record["new_credential_id"] == doc["current"]["CredentialId"]

    second = cli("run", "--json")
    assert second.code == 0
    (again,) = [r for r in second.json()["results"] if r["user"] == "ops-alice"]
    assert again["action"] == "skip", "rotator just changed it (moto's dates never move)"
    assert iam_seed.password_of(sandbox, "ops-alice") == password
    assert leaks(cli, [plan.stdout, first.stdout, first.stderr, second.stdout], {password}) == []


def test_a_run_killed_after_the_password_was_applied_reapplies_the_same_one(
    cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy
) -> None:
    """The crash rule: IAM holds the new password, the journal does not know; the next
    run applies the SAME (pending) password, so the sink and IAM agree."""
    cli.endpoint = proxy.url
    iam_seed.console_user(sandbox, "ops-alice", path="/ops/", days_old=100)
    iam_seed.write_rules(cli, CONSOLE_RULE)
    box: dict[str, subprocess.Popen[str]] = {}
    proxy.on(
        "UpdateLoginProfile",
        phase="after",
        callback=lambda: os.kill(box["proc"].pid, signal.SIGKILL),
    )
    box["proc"] = cli.popen("run", "--config", str(cli.config))
    box["proc"].communicate(timeout=60)
    assert box["proc"].returncode == -signal.SIGKILL
    doc = cli.sink_document(sandbox.account(), "ops-alice", "login-profile")
    pending = doc["pending"]
    assert doc["current"] is None and pending is not None
    applied = iam_seed.password_of(sandbox, "ops-alice")
    assert applied == pending["Password"], "applied before the kill"
    (record,) = cli.journal_rows()
    assert record["state"] == "creating"

    result = cli("run", "--json")  # the dead run's lease is taken over at once
    assert result.code == 0, result.stdout + result.stderr
    doc = cli.sink_document(sandbox.account(), "ops-alice", "login-profile")
    assert doc["current"]["Password"] == applied
    assert doc["current"]["CredentialId"] == pending["CredentialId"]
    assert iam_seed.password_of(sandbox, "ops-alice") == applied
    assert proxy.actions_seen().count("UpdateLoginProfile") == 2, "applied again, not replaced"


def test_an_ssh_key_pair_is_generated_uploaded_and_the_old_key_retired(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    old = iam_seed.ssh_user(sandbox, "git-bot", days_old=100)
    iam_seed.write_rules(cli, SSH_RULE)
    result = cli("run", "--json")
    assert result.code == 0, result.stdout + result.stderr
    keys = iam_seed.ssh_keys(sandbox, "git-bot")
    assert len(keys) == 1 and old not in keys and list(keys.values()) == ["Active"]
    (new,) = keys
    assert [s for s, _ in cli.steps("git-bot")] == [
        "create",
        "verify",
        "promote",
        "deactivate",
        "delete",
    ]
    doc = cli.sink_document(sandbox.account(), "git-bot", "ssh-public-key")
    private = doc["current"]["PrivateKey"]
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert doc["current"]["CredentialId"] == new
    body = sandbox.iam.get_ssh_public_key(UserName="git-bot", SSHPublicKeyId=new, Encoding="SSH")
    served = body["SSHPublicKey"]["SSHPublicKeyBody"]
    assert iam_seed.public_key_of(private).split()[:2] == served.split()[:2]
    lines = {line for line in private.splitlines() if not line.startswith("-----")}
    assert leaks(cli, [result.stdout, result.stderr], {private, *lines}) == []


def test_unused_credentials_are_disabled_through_the_credential_report(
    cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy
) -> None:
    now = utcnow()
    keys = {u: sandbox.create_user(u, keys=1)[0]["AccessKeyId"] for u in ("idle", "stale", "busy")}
    keys["fresh"] = sandbox.create_user("fresh", keys=1)[0]["AccessKeyId"]
    for name in ("idle", "stale", "busy"):
        sandbox.age_keys(name, days=60)
    iam_seed.use_key(sandbox, keys["stale"], now - timedelta(days=50))
    iam_seed.use_key(sandbox, keys["busy"], now - timedelta(days=1))
    iam_seed.console_user(sandbox, "console-old", days_old=100)
    iam_seed.sign_in(sandbox, "console-old", now - timedelta(days=50))
    iam_seed.console_user(sandbox, "console-new", days_old=100)
    iam_seed.sign_in(sandbox, "console-new", now - timedelta(days=2))
    iam_seed.write_rules(cli, *UNUSED_RULES)
    cli.endpoint = proxy.url

    plan = cli("plan", "--json")
    assert plan.code == 0, plan.stderr
    disable = {(d["user"], d["kind"]): d for d in plan.items() if d["action"] == "disable"}
    assert set(disable) == {
        ("idle", "access-key"),
        ("stale", "access-key"),
        ("console-old", "login-profile"),
    }
    assert disable[("idle", "access-key")]["credential_id"] == keys["idle"]
    assert "never used" in disable[("idle", "access-key")]["reason"]
    used = f"last used {now - timedelta(days=50):%Y-%m-%d}"
    assert used in disable[("stale", "access-key")]["reason"]
    assert used in disable[("console-old", "login-profile")]["reason"]
    seen = Counter(proxy.actions_seen())
    assert seen["GetCredentialReport"] >= 1, "seven users: the report is cheaper"
    assert seen["ListAccessKeys"] == 2, "listed per user: only the keys the plan disables"

    result = cli("run", "--json")
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["counts"]["disabled"] == 3
    assert sandbox.keys("idle") == {keys["idle"]: "Inactive"}
    assert sandbox.keys("stale") == {keys["stale"]: "Inactive"}
    assert sandbox.keys("busy") == {keys["busy"]: "Active"}
    assert sandbox.keys("fresh") == {keys["fresh"]: "Active"}
    assert iam_seed.password_of(sandbox, "console-old") is None, "login profile deleted"
    assert iam_seed.password_of(sandbox, "console-new") is not None
    events = [e for e in cli.audit_events() if e.get("step") == "disable"]
    assert {(e["user"], e["outcome"], e["credential_id"]) for e in events} == {
        ("idle", "done", keys["idle"]),
        ("stale", "done", keys["stale"]),
        ("console-old", "done", "console-old"),
    }
    assert all(e["reason"] for e in events)


def test_report_gives_the_cis_verdicts_and_what_rotator_will_do(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    now = utcnow()
    old = sandbox.create_user("old-key", keys=1)[0]["AccessKeyId"]
    sandbox.age_keys("old-key", days=120)
    iam_seed.use_key(sandbox, old, now - timedelta(days=1))
    two = [k["AccessKeyId"] for k in sandbox.create_user("two-keys", keys=2)]
    for key in two:
        iam_seed.use_key(sandbox, key, now)
    sandbox.create_user("idle", keys=1)
    sandbox.age_keys("idle", days=60)
    iam_seed.console_user(sandbox, "console", days_old=10)
    iam_seed.sign_in(sandbox, "console", now)
    cert, key = iam_seed.self_signed("www.example.com", not_after=now - timedelta(days=1))
    sandbox.iam.upload_server_certificate(
        ServerCertificateName="www", CertificateBody=cert, PrivateKey=key
    )
    iam_seed.write_rules(cli, UNUSED_RULES[0].replace('max_age = "365d"', 'max_age = "90d"'))

    result = iam_seed.report(cli, "--json", "--benchmark", "cis-v4.0")
    assert result.code == 0, result.stdout + result.stderr
    data = result.json()
    assert data["source"].startswith("credential report")
    rows = {(r["user"], r["kind"]): r for r in data["credentials"]}
    verdicts = {k: (r["cis_1.12"], r["cis_1.13"], r["cis_1.14"]) for k, r in rows.items()}
    assert verdicts == {
        ("old-key", "access-key"): ("pass", "pass", "fail"),
        ("two-keys", "access-key"): ("pass", "fail", "pass"),
        ("idle", "access-key"): ("fail", "pass", "pass"),
        ("console", "login-profile"): ("pass", "n/a", "n/a"),
    }
    assert rows[("old-key", "access-key")]["age_days"] == 120
    assert rows[("old-key", "access-key")]["rotator_action"] == "rotate"
    assert rows[("idle", "access-key")]["rotator_action"] == "disable"
    assert rows[("two-keys", "access-key")]["rotator_action"] == "block"
    assert rows[("console", "login-profile")]["rotator_action"] == "none"
    # moto reports every server certificate as expired in 2012 (a moto gap): 1.19 fails.
    assert [c["name"] for c in data["server_certificates"]] == ["www"]
    assert data["server_certificates"][0]["cis_1.19"] == "fail"
    # 1.13 is counted per user: two-keys fails once, whatever the number of its keys.
    assert data["failures"] == {"1.12": 1, "1.13": 1, "1.14": 1, "1.19": 1}
    assert {r["credential_id"] for r in data["credentials"] if r["user"] == "two-keys"} == set(two)

    table = iam_seed.report(cli, "--benchmark", "cis-v4")
    assert table.code == 0, table.stderr
    assert "failures per CIS control (cis-v4.0): 1.12: 1, 1.13: 1, 1.14: 1, 1.19: 1" in table.stdout
    assert json.dumps(data)  # the JSON is serialisable as printed


def test_plan_and_run_tables_show_disable_decisions(cli: Cli, sandbox: MotoSandbox) -> None:
    sandbox.create_user("idle", keys=1)
    sandbox.age_keys("idle", days=60)
    iam_seed.write_rules(cli, UNUSED_RULES[0])
    plan = cli("plan")
    assert plan.code == 0, plan.stderr
    assert "disable" in plan.stdout and "never used" in plan.stdout
    run = cli("run")
    assert run.code == 0, run.stderr
    assert "disable" in run.stdout
