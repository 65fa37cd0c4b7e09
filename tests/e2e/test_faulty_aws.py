"""Flaky AWS: throttling, 5xx and dropped connections (some after IAM applied the call)
injected by a proxy in front of moto. Every rotation completes within three sweeps, and
nothing is lost or done twice."""

from __future__ import annotations

import pytest

from tests.support import tally
from tests.support.cli import Cli
from tests.support.faults import FaultPlan, FaultProxy
from tests.support.invariants import assert_rotated_once_and_whole, history
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

USERS = [f"ci-{i:02d}" for i in range(10)]
FLAKY = FaultPlan(
    seed=20261123,
    latency=(0.0, 0.005),
    throttle=0.20,
    server_error=0.05,
    drop_before=0.01,
    drop_after=0.01,
)
SINKS = {
    "file": None,
    "secretsmanager": '{ type = "secretsmanager", name = "rotator/{account}/{user}/{kind}" }',
}


@pytest.mark.parametrize("sink", list(SINKS))
def test_every_rotation_completes_within_three_sweeps_under_faults(
    cli: Cli, sandbox: MotoSandbox, aws_env: str, sink: str
) -> None:
    originals = {}
    for user in USERS:
        originals[user] = sandbox.create_user(user, path="/ci/", keys=1)[0]["AccessKeyId"]
        sandbox.age_keys(user, days=120)
    cli.write_policy(max_age="90d", sink=SINKS[sink])
    sweeps = 0
    with FaultProxy(aws_env, FLAKY) as proxy:
        cli.endpoint = proxy.url
        for sweeps in range(1, 4):  # noqa: B007 (reported below)
            result = cli("run", "--json")
            assert result.code in (0, 1), result.stderr
            done = [r for r in history(cli) if r["state"] == "completed"]
            if len(done) == len(USERS) and cli("status", "--json").items() == []:
                break
        counts = proxy.counts()
    assert_rotated_once_and_whole(cli, sandbox, USERS, sink=sink, originals=originals)
    injected = sum(
        counts[k] for k in ("throttled", "server_errors", "dropped_before", "dropped_after")
    )
    assert injected > 0
    tally.add(
        fault_runs=1,
        fault_sweeps=sweeps,
        fault_requests=counts["requests"],
        faults_throttled=counts["throttled"],
        faults_5xx=counts["server_errors"],
        faults_dropped_before_applied=counts["dropped_before"],
        faults_dropped_after_applied=counts["dropped_after"],
    )


@pytest.mark.parametrize(
    "action",
    [
        "CreateAccessKey",
        "UpdateAccessKey",
        "DeleteAccessKey",
        "CreateSecret",
        "PutSecretValue",
        "UpdateSecretVersionStage",
    ],
)
def test_a_call_applied_but_unanswered_is_neither_repeated_blindly_nor_lost(
    cli: Cli, sandbox: MotoSandbox, aws_env: str, action: str
) -> None:
    """The connection drops after AWS applied the call: rotator sees an error for a call
    that succeeded. A create must not leave an orphan key behind (an SDK retry would make
    a second key whose secret is never seen); the others must be recognised as done."""
    originals = {"ci-app": sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]}
    sandbox.age_keys("ci-app", days=120)
    cli.write_policy(max_age="90d", sink=SINKS["secretsmanager"])
    with FaultProxy(aws_env) as proxy:
        cli.endpoint = proxy.url
        proxy.on(action, phase="after", callback=lambda: None)
        result = cli("run", "--json")
        assert proxy.counts()["hooks_fired"] == 1
    assert result.code == 0, result.stdout + result.stderr
    assert_rotated_once_and_whole(
        cli, sandbox, ["ci-app"], sink="secretsmanager", originals=originals
    )
    tally.add(applied_but_unanswered_cases=1)
