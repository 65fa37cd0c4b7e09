"""End to end: the ``rotator`` CLI as a subprocess against a moto server over HTTP.

Each test checks what a user would: IAM's keys, the sink's secrets (and that they
authenticate as the user through STS), the audit log, the journal and the exit code.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from tests.support.cli import Cli
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

REQUIRED = {
    "event",
    "run_id",
    "rotation_id",
    "account",
    "user",
    "kind",
    "credential_id",
    "step",
    "outcome",
    "ts",
    "level",
}


def seed_account(sandbox: MotoSandbox) -> dict[str, list[dict[str, str]]]:
    """The situations of a real account. Returns the keys created, with their secrets."""
    keys = {
        "ci-deployer": sandbox.create_user("ci-deployer", path="/ci/", keys=1),
        "ci-builder": sandbox.create_user("ci-builder", path="/ci/", keys=2),
        "legacy-app": sandbox.create_user("legacy-app", path="/ci/", keys=2),
        "break-glass": sandbox.create_user("break-glass", path="/ci/", keys=1),
        "vendor": sandbox.create_user("vendor", path="/ci/", tags={"rotator:skip": "true"}, keys=1),
        "ops-alice": sandbox.create_user("ops-alice", path="/ops/", keys=1),
    }
    sandbox.iam.update_access_key(
        UserName="ci-builder", AccessKeyId=keys["ci-builder"][0]["AccessKeyId"], Status="Inactive"
    )
    time.sleep(1.1)  # seeded keys are strictly older than the sweep's start
    return keys


def test_plan_json_gives_a_decision_with_a_reason_for_every_selected_user(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    keys = seed_account(sandbox)
    result = cli("plan", "--json")
    assert result.code == 0, result.stderr
    decisions = {d["user"]: d for d in result.items()}
    assert set(decisions) == {"ci-deployer", "ci-builder", "legacy-app", "break-glass", "vendor"}
    for d in decisions.values():
        assert {"user", "kind", "credential_id", "action", "reason"} <= set(d)
        assert d["reason"]
    assert decisions["ci-deployer"]["action"] == "rotate"
    assert decisions["ci-builder"]["action"] == "rotate"
    assert decisions["ci-builder"]["delete_first"] == keys["ci-builder"][0]["AccessKeyId"]
    assert decisions["legacy-app"]["action"] == "block"
    assert decisions["break-glass"]["action"] == "exclude"
    assert decisions["vendor"]["action"] == "exclude"
    assert sandbox.keys("ci-deployer") == {keys["ci-deployer"][0]["AccessKeyId"]: "Active"}


def test_a_zero_duration_sweep_runs_the_whole_cycle(cli: Cli, sandbox: MotoSandbox) -> None:
    keys = seed_account(sandbox)
    account = sandbox.account()
    result = cli("run", "--json")
    assert result.code == 1, "a blocked user makes the sweep exit 1"
    summary = result.json()
    assert summary["counts"]["completed"] == 2
    assert summary["counts"]["blocked"] == 1

    for user in ("ci-deployer", "ci-builder"):
        old = keys[user][-1]["AccessKeyId"]
        now = sandbox.keys(user)
        assert len(now) == 1 and old not in now, "old key deleted, inactive one too"
        (new_id,) = now
        assert now[new_id] == "Active"
        doc = cli.sink_document(account, user)
        assert set(doc) == {"current", "previous", "pending", "fence"}
        assert doc["pending"] is None
        assert doc["current"]["AccessKeyId"] == new_id
        arn = sandbox.caller_arn(doc["current"]["AccessKeyId"], doc["current"]["SecretAccessKey"])
        assert arn.endswith(f":user/ci/{user}")
        path = cli.tmp / "secrets" / account / user / "access-key.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert [s for s, _ in cli.steps(user)] == [
            "create",
            "verify",
            "promote",
            "deactivate",
            "delete",
        ]

    legacy = {k["AccessKeyId"] for k in keys["legacy-app"]}
    assert set(sandbox.keys("legacy-app")) == legacy, "blocked: nothing changed"
    assert cli.steps("legacy-app") == [("plan", "blocked")]
    for user in ("break-glass", "vendor", "ops-alice"):
        assert set(sandbox.keys(user)) == {keys[user][0]["AccessKeyId"]}


def test_audit_events_carry_the_schema(cli: Cli, sandbox: MotoSandbox) -> None:
    seed_account(sandbox)
    cli("run")
    events = cli.audit_events()
    names = [e["event"] for e in events]
    assert names[0] == "sweep.started"
    assert names[-1] == "sweep.finished"
    finished = events[-1]
    assert finished["completed"] == 2
    assert finished["blocked"] == 1
    steps = [e for e in events if e["event"] == "rotation.step" and e["step"] != "plan"]
    assert len(steps) == 10
    for e in steps:
        assert set(e) >= REQUIRED, REQUIRED - set(e)
        assert e["account"] == sandbox.account()
        assert e["dry_run"] is False
        assert e["ts"].endswith("Z")
    blocked = next(e for e in events if e.get("outcome") == "blocked")
    assert "cannot tell which one is in use" in blocked["reason"]
    assert len({e["run_id"] for e in events}) == 1


def test_no_secret_reaches_logs_journal_or_output(cli: Cli, sandbox: MotoSandbox) -> None:
    keys = seed_account(sandbox)
    account = sandbox.account()
    outputs = [cli("plan"), cli("run"), cli("run", "--json"), cli("status"), cli("history")]
    secrets = {k["SecretAccessKey"] for ks in keys.values() for k in ks}
    for user in ("ci-deployer", "ci-builder"):
        doc = cli.sink_document(account, user)
        for slot in ("current", "previous"):
            if doc[slot]:
                secrets.add(doc[slot]["SecretAccessKey"])
    assert len(secrets) >= 10
    haystacks = {
        "audit": (cli.tmp / "audit.jsonl").read_text(),
        "journal": cli.journal_bytes().decode("latin-1"),
        **{f"stdout{i}": o.stdout for i, o in enumerate(outputs)},
        **{f"stderr{i}": o.stderr for i, o in enumerate(outputs)},
    }
    for name, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {name}"


def test_dry_run_changes_nothing(cli: Cli, sandbox: MotoSandbox) -> None:
    keys = seed_account(sandbox)
    before = {u: sandbox.keys(u) for u in keys}
    result = cli("run", "--dry-run", "--json")
    assert result.code == 1  # the blocked user is still reported
    swept = result.json()
    assert swept["dry_run"] is True
    # The would-be rotations are counted (ci-deployer, ci-builder), the block too.
    assert (swept["counts"]["would_rotate"], swept["counts"]["blocked"]) == (2, 1)
    assert swept["counts"]["rotated"] == 0
    assert {u: sandbox.keys(u) for u in keys} == before
    assert not (cli.tmp / "secrets").exists()
    assert cli.journal_rows() == []


def test_a_rotation_spans_sweeps_and_restarts(cli: Cli, sandbox: MotoSandbox) -> None:
    """deactivate_after holds the old key; every run is a new process that resumes."""
    # 30s: the second run must start before the step is due, even on a loaded machine
    # where each CLI process takes seconds to start.
    cli.write_policy(deactivate_after="30s", delete_after="0s")
    old = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    time.sleep(1.1)
    first = cli("run", "--json")
    assert first.code == 0, first.stderr
    keys = sandbox.keys("ci-app")
    assert len(keys) == 2 and keys[old] == "Active", "old key kept until deactivate_after"
    status = cli("status", "--json").items()
    assert [(s["state"], s["next_step"], s["due_now"]) for s in status] == [
        ("promoted", "deactivate", False)
    ]

    second = cli("run", "--json")
    assert second.code == 0
    assert [r["action"] for r in second.json()["results"]] == ["wait"]
    assert sandbox.keys("ci-app") == keys, "nothing changes before the step is due"

    (due,) = cli("status", "--json").items()
    wait = datetime.fromisoformat(due["due_at"]) - datetime.now(UTC)
    time.sleep(max(0.0, wait.total_seconds()) + 0.2)
    third = cli("run", "--json")
    assert third.code == 0, third.stderr
    (new,) = sandbox.keys("ci-app")
    assert new != old
    history = cli("history", "--user", "ci-app", "--json").items()
    assert len(history) == 1
    assert history[0]["state"] == "completed"
    assert [s["step"] for s in history[0]["steps"]] == [
        "create",
        "verify",
        "promote",
        "deactivate",
        "delete",
    ]
    assert cli("status", "--json").items() == []


def test_an_old_key_used_after_promotion_is_held_not_deactivated(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    cli.write_policy(deactivate_after="2s")
    old = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]
    time.sleep(1.1)
    assert cli("run").code == 0
    time.sleep(1.1)
    sandbox.caller_arn(old["AccessKeyId"], old["SecretAccessKey"])  # a consumer not switched
    time.sleep(1.2)
    held = cli("run", "--json")
    assert held.code == 0, "held is a warning, not a failure"
    assert sandbox.keys("ci-app")[old["AccessKeyId"]] == "Active"
    event = [e for e in cli.audit_events() if e.get("outcome") == "held"][-1]
    assert event["level"] == "warning"
    assert event["step"] == "deactivate"
    assert "after the promotion" in event["reason"]
    (status,) = cli("status", "--json").items()
    assert status["held_since"]
    assert status["next_step"] == "deactivate"


def test_bad_policy_exits_2_naming_file_rule_and_field_without_calling_aws(
    cli: Cli, tmp_path: Path, recorder: list[str]
) -> None:
    cli.config.write_text(cli.config.read_text().replace('max_age = "0s"', 'max_age = "9x"'))
    for command in ("validate", "plan", "run"):
        result = cli(command)
        assert result.code == 2
        assert str(cli.config) in result.stderr
        assert "rule 'ci-keys': max_age: invalid duration '9x'" in result.stderr
    assert recorder == []


def test_validate_accepts_a_good_policy(cli: Cli) -> None:
    result = cli("validate")
    assert result.code == 0
    assert "ci-keys" in result.stdout


def test_secretsmanager_sink_stages_versions(cli: Cli, sandbox: MotoSandbox) -> None:
    cli.write_policy(sink='{ type = "secretsmanager", name = "rotator/{account}/{user}/{kind}" }')
    sandbox.create_user("ci-app", path="/ci/", keys=1)
    time.sleep(1.1)
    assert cli("run").code == 0
    name = f"rotator/{sandbox.account()}/ci-app/access-key"
    sm = sandbox.client("secretsmanager")
    # VersionStage is explicit: moto 5.2 does not move the default version with AWSCURRENT.
    first = json.loads(
        sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"]
    )
    assert sandbox.caller_arn(first["AccessKeyId"], first["SecretAccessKey"]).endswith("/ci-app")
    time.sleep(1.1)
    assert cli("run").code == 0  # max_age 0s: rotate again
    current = json.loads(
        sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"]
    )
    previous = json.loads(
        sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"]
    )
    assert previous["AccessKeyId"] == first["AccessKeyId"]
    assert current["AccessKeyId"] != first["AccessKeyId"]
    assert list(sandbox.keys("ci-app")) == [current["AccessKeyId"]]


def test_aws_credentials_profile_sink(
    cli: Cli, sandbox: MotoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host rotating the key it uses itself: the profile file always holds a working key."""
    creds = cli.tmp / "credentials"
    creds.write_text("[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = x\n")
    creds.chmod(0o640)  # the application's file: its mode is kept
    cli.write_policy(
        sink=f'{{ type = "file", path = "{creds}", format = "aws-credentials", profile = "ci" }}'
    )
    cli.config.write_text(cli.config.read_text().replace('users = ["*"]', 'users = ["ci-app"]'))
    sandbox.create_user("ci-app", path="/ci/", keys=1)
    time.sleep(1.1)
    assert cli("run").code == 0
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    session = boto3.Session(profile_name="ci")
    assert session.get_credentials() is not None
    key = session.get_credentials()
    assert sandbox.caller_arn(key.access_key, key.secret_key).endswith("/ci-app")
    assert "[other]" in creds.read_text()
    assert stat.S_IMODE(creds.stat().st_mode) == 0o640


def test_demo_runs_the_sandbox_end_to_end_and_serve_prints_a_working_environment(
    tmp_path: Path,
) -> None:
    """``rotator demo --serve``: the sweep behaves, then the printed ``export`` lines alone
    (ROTATOR_CONFIG included) let another shell's ``rotator history`` read the sandbox's
    journal; Ctrl-C ends it with the demo's exit code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROTATOR_"))}
    demo = subprocess.Popen(
        [sys.executable, "-m", "rotator", "demo", "--serve", "--workdir", str(tmp_path / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "COLUMNS": "120"},
    )
    try:
        assert demo.stdout is not None
        shown: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "the demo ended before serving: " + "".join(shown)
            shown.append(line)
            if line.startswith("Ctrl-C stops the sandbox"):
                break
        printed = "".join(shown)
        assert "authenticates as" in printed
        exports = dict(
            shlex.split(line.strip().removeprefix("export "))[0].split("=", 1)
            for line in shown
            if line.strip().startswith("export ")
        )
        assert exports["ROTATOR_CONFIG"] == str(tmp_path / "d" / "rotator.toml")
        history = subprocess.run(
            [sys.executable, "-m", "rotator", "history", "--output", "json"],
            capture_output=True,
            text=True,
            env={**env, **exports},
            timeout=120,
        )
        assert history.returncode == 0, history.stderr
        assert len(json.loads(history.stdout)["items"]) >= 2, "the demo's rotations"
    finally:
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err
    assert (tmp_path / "d" / "audit.jsonl").exists()


def test_at_a_terminal_run_and_plan_show_a_progress_bar_and_pipes_get_none(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    for n in range(6):
        sandbox.create_user(f"ci-{n}", path="/ci/", keys=1)
    cli.write_policy(max_age="0s")

    planned = cli.on_terminal("plan")
    assert planned.code == 0, planned.stderr
    assert "reading users" in planned.stderr and "6/6" in planned.stderr
    assert "rotating" not in planned.stderr, "a plan changes nothing"

    ran = cli.on_terminal("run")
    assert ran.code == 0, ran.stderr
    assert "reading users" in ran.stderr and "rotating" in ran.stderr
    assert ran.stderr.count("6/6") >= 2, "six users read, six rotations done"
    assert "completed" in ran.stdout, "the summary still goes to stdout"

    reported = cli.on_terminal("report")
    assert reported.code == 0, reported.stderr
    assert "reading users" in reported.stderr

    piped = cli("run", "--dry-run")
    assert piped.code == 0, piped.stderr
    assert "reading users" not in piped.stderr + piped.stdout


def test_tables_at_80_columns_keep_ids_whole_and_count_what_needs_nothing(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    """A pipe or cron mail is 80 columns: no key ID is split across lines and each row is
    one line (``--wide`` wraps long reasons whole); the users with nothing to do are one
    caption line (``--all`` lists them); a user name with brackets keeps its characters
    (it is not read as markup)."""
    keys = seed_account(sandbox)
    cli.write_policy(max_age="90d")  # nothing is due: skipped, but legacy-app is blocked
    sandbox.create_user("legacy-[a]pp", path="/ci/", keys=1)
    cli.env["COLUMNS"] = "80"
    blocked = [k["AccessKeyId"] for k in keys["legacy-app"]]

    plan = cli("plan")
    assert plan.code == 0, plan.stderr
    lines = plan.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["legacy-app", "break-glass", "vendor"]
    assert any(cell.strip() in blocked for cell in rows[0].split("│")), "the ID is whole"
    assert "3 decisions not listed (3 skip); --all lists them" in " ".join(plan.stdout.split())

    everything = cli("plan", "--all")
    names = [line.split("│")[1].strip() for line in everything.stdout.splitlines() if "│" in line]
    assert "legacy-[a]pp" in names and "ci-deployer" in names

    wide = cli("plan", "--wide")
    text = " ".join(wide.stdout.replace("│", " ").split())
    assert "rotator cannot tell which one is in use" in text
    assert "rotator cannot tell which one is in use" not in " ".join(plan.stdout.split())
