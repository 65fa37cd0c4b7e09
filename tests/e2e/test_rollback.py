"""``rotator rollback``: the old key comes back, the sink's previous secret is current again."""

from __future__ import annotations

import time

import pytest

from tests.support.cli import Cli
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e


def rotate_once(cli: Cli, sandbox: MotoSandbox) -> str:
    """A first full rotation, so the sink knows the key the next rotation replaces."""
    sandbox.create_user("ci-app", path="/ci/", keys=1)
    time.sleep(1.1)
    assert cli("run").code == 0
    (key,) = sandbox.keys("ci-app")
    time.sleep(1.1)
    return key


def only_rotation(cli: Cli, state: str) -> str:
    history = cli("history", "--json").items()
    (found,) = [h for h in history if h["state"] == state]
    return str(found["rotation_id"])


def test_rollback_round_trip_after_deactivation(cli: Cli, sandbox: MotoSandbox) -> None:
    account = sandbox.account()
    k2 = rotate_once(cli, sandbox)
    cli.write_policy(deactivate_after="0s", delete_after="1h")
    assert cli("run").code == 0
    keys = sandbox.keys("ci-app")
    assert keys[k2] == "Inactive"
    (k3,) = set(keys) - {k2}
    rotation_id = only_rotation(cli, "deactivated")

    result = cli("rollback", rotation_id, "--yes")
    assert result.code == 0, result.stderr
    assert f"{k2} is active and the sink's current secret again" in result.stdout
    assert sandbox.keys("ci-app") == {k2: "Active", k3: "Active"}
    doc = cli.sink_document(account, "ci-app")
    assert doc["current"]["AccessKeyId"] == k2
    assert doc["previous"]["AccessKeyId"] == k3
    current = doc["current"]
    assert sandbox.caller_arn(current["AccessKeyId"], current["SecretAccessKey"]).endswith(
        "/ci-app"
    )
    history = cli("history", "--json").items()
    rolled = next(h for h in history if h["rotation_id"] == rotation_id)
    assert rolled["state"] == "rolled-back"
    assert rolled["steps"][-1]["step"] == "rollback"
    assert any(e.get("step") == "rollback" and e["outcome"] == "done" for e in cli.audit_events())
    plan = {d["user"]: d for d in cli("plan", "--json").items()}
    assert plan["ci-app"]["action"] == "block", "two active keys again: a human decides"

    again = cli("rollback", rotation_id, "--yes")
    assert again.code == 0, "rolling back twice is harmless"


def test_rollback_is_refused_once_the_old_key_is_deleted(cli: Cli, sandbox: MotoSandbox) -> None:
    rotate_once(cli, sandbox)
    rotation_id = only_rotation(cli, "completed")
    result = cli("rollback", rotation_id, "--yes")
    assert result.code == 1
    assert "is deleted: rollback is no longer possible" in result.stderr
    assert len(sandbox.keys("ci-app")) == 1


def test_rollback_of_an_unknown_rotation_is_bad_input(cli: Cli) -> None:
    result = cli("rollback", "rot-doesnotexist", "--yes")
    assert result.code == 2
    assert "no rotation rot-doesnotexist" in result.stderr
