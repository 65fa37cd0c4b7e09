"""Two ``rotator run`` processes started together on one journal: every credential is
rotated exactly once, and every user ends with one working key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.support import tally
from tests.support.cli import Cli
from tests.support.faults import FaultPlan, FaultProxy
from tests.support.invariants import assert_rotated_once_and_whole, history
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

USERS = [f"ci-{i:02d}" for i in range(12)]


@pytest.fixture
def slow_cli(cli: Cli, aws_env: str) -> Iterator[Cli]:
    """The CLI behind a proxy adding 20-60 ms per call, so that two sweeps overlap."""
    with FaultProxy(aws_env, FaultPlan(seed=3, latency=(0.02, 0.06))) as proxy:
        cli.endpoint = proxy.url
        cli.write_policy(max_age="90d")
        yield cli


def seed_old_keys(sandbox: MotoSandbox) -> dict[str, str]:
    originals = {}
    for user in USERS:
        originals[user] = sandbox.create_user(user, path="/ci/", keys=1)[0]["AccessKeyId"]
        sandbox.age_keys(user, days=120)
    return originals


def window(result: dict[str, str]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(result["started_at"]), datetime.fromisoformat(
        result["finished_at"]
    )


@pytest.mark.parametrize("journal", ["sqlite", "dynamodb"])
def test_two_sweeps_at_once_rotate_every_credential_exactly_once(
    slow_cli: Cli, sandbox: MotoSandbox, journal: str
) -> None:
    if journal == "dynamodb":
        slow_cli.env["ROTATOR_JOURNAL__URL"] = "dynamodb://rotator-journal"
        init = slow_cli("journal", "init")
        assert init.code == 0, init.stderr
    originals = seed_old_keys(sandbox)
    procs = [slow_cli.popen("run", "--json", "--config", str(slow_cli.config)) for _ in "ab"]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stdout + stderr
    results = [__import__("json").loads(stdout) for stdout, _ in outputs]
    (a_start, a_end), (b_start, b_end) = (window(r) for r in results)
    assert a_start < b_end and b_start < a_end, "the two sweeps did not overlap"

    assert_rotated_once_and_whole(slow_cli, sandbox, USERS, sink="file", originals=originals)
    assert len(history(slow_cli)) == len(USERS), "one rotation per user, no more"
    started = [r["counts"]["started"] for r in results]
    assert sum(started) == len(USERS), started
    tally.add(concurrent_sweeps_run=2, concurrent_users_rotated=len(USERS))
