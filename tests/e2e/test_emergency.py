"""``rotator rotate --emergency``: a leaked key is deactivated FIRST, then replaced."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.cli import Cli, Result
from tests.support.daemon import Daemon, named
from tests.support.faults import FaultProxy, is_mutating
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

DAEMON_EVERY_SECOND = """
[daemon]
interval = "1s"
listen_port = 0
"""


@pytest.fixture
def proxied(cli: Cli, aws_env: str) -> Iterator[tuple[Cli, FaultProxy]]:
    cli.write_policy(max_age="90d", deactivate_after="7d", delete_after="7d")
    with FaultProxy(aws_env) as proxy:
        cli.endpoint = proxy.url
        yield cli, proxy


def test_a_leaked_key_is_deactivated_before_the_new_one_exists(
    proxied: tuple[Cli, FaultProxy], sandbox: MotoSandbox
) -> None:
    cli, proxy = proxied
    leaked = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    seen_at_create: dict[str, str] = {}
    # The hook looks at IAM when the first CreateAccessKey arrives (and, being a "before"
    # hook, drops that call as a flaky network would: the step's retry creates the key).
    proxy.on(
        "CreateAccessKey",
        phase="before",
        callback=lambda: seen_at_create.update(sandbox.keys("ci-app")),
    )
    result = cli("rotate", "--access-key-id", leaked, "--emergency", "--yes", "--json")
    assert seen_at_create == {leaked: "Inactive"}, "the leaked key was still active at create"
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert (doc["kind"], doc["ok"]) == ("rotation", True)
    report = doc["result"]
    assert report["user"] == "ci-app"
    assert report["state"] == "completed"
    first = report["steps"][0]
    assert (first["step"], first["outcome"], first["credential_id"]) == (
        "deactivate",
        "done",
        leaked,
    )
    keys = sandbox.keys("ci-app")
    assert leaked not in keys, "--hold 0s deletes the leaked key at once"
    (new,) = keys
    assert (report["credential_id"], report["new_credential_id"]) == (leaked, new)
    doc = cli.sink_document(sandbox.account(), "ci-app")
    assert doc["current"]["AccessKeyId"] == new
    assert sandbox.caller_arn(new, doc["current"]["SecretAccessKey"]).endswith("/ci-app")
    history = cli("history", "--json").items()
    assert history[0]["emergency"] is True
    assert "completed (emergency)" in cli("history").stdout


def test_a_hold_keeps_the_leaked_key_inactive_until_it_expires(
    proxied: tuple[Cli, FaultProxy], sandbox: MotoSandbox
) -> None:
    cli, _ = proxied
    leaked = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    result = cli("rotate", "--access-key-id", leaked, "--emergency", "--hold", "1h", "--yes")
    assert result.code == 0, result.stdout + result.stderr
    keys = sandbox.keys("ci-app")
    assert keys[leaked] == "Inactive"
    assert list(keys.values()).count("Active") == 1
    (status,) = cli("status", "--json").items()
    assert (status["state"], status["next_step"], status["due_now"]) == (
        "deactivated",
        "delete",
        False,
    )
    assert status["emergency"] is True
    assert "deactivated (emergency)" in cli("status").stdout


def test_two_keys_the_leaked_one_makes_room_and_the_other_is_untouched(
    proxied: tuple[Cli, FaultProxy], sandbox: MotoSandbox
) -> None:
    cli, _ = proxied
    leaked, other = (k["AccessKeyId"] for k in sandbox.create_user("ci-app", path="/ci/", keys=2))
    refused = cli("rotate", "--access-key-id", leaked, "--emergency", "--hold", "1d", "--yes")
    assert refused.code == 2
    assert "--hold 0s" in refused.stderr
    assert sandbox.keys("ci-app") == {leaked: "Active", other: "Active"}, "refused: no change"
    result = cli("rotate", "--access-key-id", leaked, "--emergency", "--yes")
    assert result.code == 0, result.stdout + result.stderr
    keys = sandbox.keys("ci-app")
    assert leaked not in keys
    assert keys[other] == "Active"
    assert len(keys) == 2


def test_dry_run_and_confirmation_change_nothing(
    proxied: tuple[Cli, FaultProxy], sandbox: MotoSandbox
) -> None:
    cli, _ = proxied
    leaked = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    dry = cli("rotate", "--access-key-id", leaked, "--emergency", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert "emergency rotation of" in dry.stdout
    unconfirmed = cli("rotate", "--access-key-id", leaked, "--emergency")
    assert unconfirmed.code == 2
    assert "--yes" in unconfirmed.stderr
    assert sandbox.keys("ci-app") == {leaked: "Active"}


def test_an_unknown_key_or_user_is_bad_input(proxied: tuple[Cli, FaultProxy]) -> None:
    cli, _ = proxied
    unknown = cli("rotate", "--access-key-id", "AKIAUNKNOWN000000000", "--emergency", "--yes")
    assert unknown.code == 2
    assert "no access key AKIAUNKNOWN000000000" in unknown.stderr
    nobody = cli("rotate", "--user", "nobody", "--yes")
    assert nobody.code == 2
    assert "no IAM user nobody" in nobody.stderr


def test_on_demand_rotation_by_user_follows_the_normal_protocol(
    proxied: tuple[Cli, FaultProxy], sandbox: MotoSandbox
) -> None:
    cli, _ = proxied
    old = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    result = cli("rotate", "--user", "ci-app", "--kind", "access-key", "--yes", "--json")
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["result"]["state"] == "promoted", "the old key waits for deactivate_after"
    assert sandbox.keys("ci-app")[old] == "Active"


def test_beside_a_running_daemon_the_leak_waits_for_its_step_then_escalates_its_rotation(
    cli: Cli, sandbox: MotoSandbox, aws_env: str
) -> None:
    """The daemon is rotating the very key that leaks: the operator's ``rotate`` finds
    that rotation, waits while the daemon holds it mid-step, then takes it over and
    deactivates the leaked key at once instead of after ``deactivate_after``."""
    leaked = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    sandbox.age_keys("ci-app", days=120)
    cli.write_policy(
        max_age="90d", deactivate_after="7d", delete_after="7d", extra=DAEMON_EVERY_SECOND
    )
    rotated: dict[str, Result] = {}

    def operator() -> None:
        rotated["result"] = cli(
            "rotate", "--access-key-id", leaked, "--emergency", "--yes", "--json"
        )

    def leak_reported() -> None:
        """Runs while the daemon's verification of its new key is held in the proxy: the
        daemon holds the rotation's lease. Returns once the operator's rotate waits for it."""
        cli.endpoint = aws_env  # the operator's rotate goes straight to AWS
        threading.Thread(target=operator, daemon=True).start()
        deadline = time.monotonic() + 60
        while not any("waiting up to" in str(e.get("reason")) for e in cli.audit_events()):
            assert time.monotonic() < deadline, "rotate never waited for the daemon"
            time.sleep(0.05)

    with FaultProxy(aws_env) as proxy:
        proxy.on(
            "GetCallerIdentity",
            phase="before",
            callback=leak_reported,
            match=lambda request: "Credential=testing/" not in request.headers["authorization"],
        )
        cli.endpoint = proxy.url
        daemon = Daemon.launch(cli)
        try:
            deadline = time.monotonic() + 120
            while "result" not in rotated:
                assert daemon.proc.poll() is None, daemon.output
                assert time.monotonic() < deadline, "the emergency rotation did not finish"
                time.sleep(0.1)
            result = rotated["result"]
            assert result.code == 0, result.stdout + result.stderr
            finished = len(named(daemon.events(), "sweep.finished"))
            daemon.wait_count("sweep.finished", finished + 2)  # it carries on sweeping
            assert daemon.stop() == 0, daemon.output
        finally:
            daemon.kill()

    report = result.json()["result"]
    assert [(s["step"], s["outcome"]) for s in report["steps"]] == [
        ("deactivate", "done"),
        ("delete", "done"),
    ]
    assert {s["credential_id"] for s in report["steps"]} == {leaked}
    (new,) = sandbox.keys("ci-app").items()
    assert new[0] != leaked and new[1] == "Active", "the daemon's new key stays; no third key"
    doc = cli.sink_document(sandbox.account(), "ci-app")
    assert doc["current"]["AccessKeyId"] == new[0]
    assert sandbox.caller_arn(new[0], doc["current"]["SecretAccessKey"]).endswith("/ci-app")
    (rotation,) = cli("history", "--user", "ci-app", "--json").items()
    assert rotation["rotation_id"] == report["rotation_id"], "one rotation, escalated"
    assert rotation["emergency"] is True and rotation["state"] == "completed"
    # The daemon finished its step (promote) before the operator's process touched it.
    steps = [(e["step"], e["outcome"]) for e in named(cli.audit_events(), "rotation.step")]
    assert steps.index(("promote", "done")) < steps.index(("deactivate", "done"))


def _steps(report: dict[str, object]) -> list[str]:
    """A report's steps as ``step:outcome`` (whether listed as strings or as objects)."""
    listed = report["steps"]
    assert isinstance(listed, list)
    return [s if isinstance(s, str) else f"{s['step']}:{s['outcome']}" for s in listed]


def test_an_emergency_dry_run_lists_the_steps_in_order_and_changes_nothing_in_aws(
    proxied: tuple[Cli, FaultProxy], sandbox: MotoSandbox
) -> None:
    """The preview names each step that would run, in the protocol's order, on which key,
    into which sink; the AWS the CLI talks to sees only reads; then the real emergency
    takes exactly those steps."""
    cli, proxy = proxied
    leaked = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    before = sandbox.dump()
    sink = f"file {cli.tmp}/secrets/{sandbox.account()}/ci-app/access-key.json"

    dry = cli("rotate", "--access-key-id", leaked, "--emergency", "--hold", "1h", "--dry-run")
    assert dry.code == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert "would run, in order:" in lines
    steps = lines[lines.index("would run, in order:") + 1 :]
    assert [line.split()[1] for line in steps] == [
        "deactivate",
        "create",
        "verify",
        "promote",
        "delete",
    ]
    assert f"deactivate the leaked access key {leaked} first" in steps[0]
    assert f"stored as pending in {sink}" in steps[1]
    assert f"current in {sink}" in steps[3]
    assert "(from " in steps[4] and leaked in steps[4], "the hold: deleted an hour later"
    as_json = cli("rotate", "--access-key-id", leaked, "--emergency", "--dry-run", "--json")
    assert as_json.code == 0, as_json.stderr
    previewed = _steps(as_json.json()["result"])
    assert previewed == [f"{s}:dry-run" for s in ("deactivate", "create", "verify", "promote")] + [
        "delete:dry-run"
    ]

    assert [a for a in proxy.actions_seen() if is_mutating(a)] == [], "a dry run only reads"
    assert sandbox.dump() == before
    assert not (cli.tmp / "secrets").exists(), "no secret written"

    done = cli("rotate", "--access-key-id", leaked, "--emergency", "--yes", "--json")
    assert done.code == 0, done.stdout + done.stderr
    assert [s.split(":")[0] for s in _steps(done.json()["result"])] == [
        s.split(":")[0] for s in previewed
    ], "the real emergency took the previewed steps"


def test_the_emergency_result_names_the_new_key_and_its_sink_and_at_the_limit_owns_the_delete(
    proxied: tuple[Cli, FaultProxy], sandbox: MotoSandbox
) -> None:
    """At IAM's two-key limit the leaked key is deleted to make room: the result says the
    delete was done by this rotation (not ``already-done``), and names the new key and where
    its secret went."""
    cli, _ = proxied
    leaked, other = (k["AccessKeyId"] for k in sandbox.create_user("ci-app", path="/ci/", keys=2))
    dry = cli("rotate", "--access-key-id", leaked, "--emergency", "--dry-run")
    assert f"delete the leaked access key {leaked} to make room, then create" in dry.stdout

    result = cli("rotate", "--access-key-id", leaked, "--emergency", "--yes")
    assert result.code == 0, result.stdout + result.stderr
    (new,) = set(sandbox.keys("ci-app")) - {other}
    sink = f"file {cli.tmp}/secrets/{sandbox.account()}/ci-app/access-key.json"
    assert f"new access key: {new}, its secret in {sink}" in result.stdout
    assert "already-done" not in result.stdout
    assert "delete:done" in result.stdout
    assert cli.sink_document(sandbox.account(), "ci-app")["current"]["AccessKeyId"] == new
    (rotation,) = cli("history", "--json").items()
    delete = rotation["steps"][-1]
    assert (delete["step"], delete["outcome"]) == ("delete", "done")
    assert "deleted by this rotation's create step" in delete["reason"]
    create = next(s for s in rotation["steps"] if s["step"] == "create")
    assert f"stored as pending in {sink}" in create["reason"]
