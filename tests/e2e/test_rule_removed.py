"""A rotation whose rule was removed from (or renamed in) the policy is reported BLOCKED
with what to do; it never takes the sweep down, and every other user still rotates."""

from __future__ import annotations

import time

import pytest

from tests.support.cli import Cli
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

OTHERS = ("ci-a", "ci-b")


def rename_rule(cli: Cli) -> None:
    policy = cli.config.read_text()
    cli.config.write_text(policy.replace('name = "ci-keys"', 'name = "ci-keys-v2"'))


def outcomes(result: dict[str, object]) -> dict[str, dict[str, str]]:
    return {r["user"]: r for r in result["results"]}  # type: ignore[attr-defined,index]


def test_an_emergency_whose_rule_is_renamed_is_blocked_and_the_others_still_rotate(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    cli.write_policy(max_age="90d", deactivate_after="0s", delete_after="0s")
    leaked = sandbox.create_user("ci-leaky", path="/ci/", keys=1)[0]["AccessKeyId"]
    originals = {u: sandbox.create_user(u, path="/ci/", keys=1)[0]["AccessKeyId"] for u in OTHERS}
    for user in OTHERS:
        sandbox.age_keys(user, days=120)
    held = cli("rotate", "--access-key-id", leaked, "--emergency", "--hold", "1s", "--yes")
    assert held.code == 0, held.stdout + held.stderr
    (rotation,) = cli("status", "--json").items()
    rename_rule(cli)
    time.sleep(1.2)  # the hold is over: the leaked key's deletion is due

    run = cli("run", "--json")
    assert run.code == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    by_user = outcomes(run.json())
    blocked = by_user["ci-leaky"]
    assert blocked["outcome"] == "blocked"
    assert blocked["rotation_id"] == rotation["rotation_id"]
    assert (
        f"rule 'ci-keys' was removed from the policy: restore it so that emergency rotation "
        f"{rotation['rotation_id']} can finish" in blocked["reason"]
    )
    assert "rollback" not in blocked["reason"], "a rollback would reactivate the leaked key"
    for user in OTHERS:
        assert by_user[user]["outcome"] == "completed", by_user[user]
        (new,) = sandbox.keys(user)
        assert new != originals[user]
    assert run.json()["counts"]["blocked"] == 1
    assert sandbox.keys("ci-leaky")[leaked] == "Inactive", "blocked: nothing changed"


def test_a_rotation_whose_rule_is_gone_can_still_be_rolled_back(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    cli.write_policy(max_age="90d", deactivate_after="0s", delete_after="1h")
    old = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    sandbox.age_keys("ci-app", days=120)
    assert cli("run").code == 0
    (rotation,) = cli("status", "--json").items()
    assert rotation["state"] == "deactivated"
    rename_rule(cli)

    run = cli("run", "--json")
    assert run.code == 1
    reason = outcomes(run.json())["ci-app"]["reason"]
    rid = rotation["rotation_id"]
    assert f"restore it, or `rotator rollback {rid}`" in reason

    rolled = cli("rollback", rid, "--yes")
    assert rolled.code == 0, rolled.stdout + rolled.stderr
    assert "rule 'ci-keys' is no longer in the policy" in rolled.stdout
    keys = sandbox.keys("ci-app")
    assert keys[old] == "Active", "the old key is back"
    assert list(keys.values()) == ["Active", "Active"]
