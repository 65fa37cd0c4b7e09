"""The crash matrix: a real ``rotator run`` is SIGKILLed at every step boundary of an
access-key rotation, then a second run repairs it, and DESIGN.md's invariants hold.

The kill is exact: the fault proxy in front of moto fires a hook when the rotator process
sends a given AWS call — before forwarding it (the call never happened) or after (IAM
applied it but the process never saw the answer) — and the hook SIGKILLs the process.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import tally
from tests.support.cli import Cli
from tests.support.faults import FaultProxy, Request
from tests.support.invariants import assert_rotated_once_and_whole
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

SM_SINK = '{ type = "secretsmanager", name = "rotator/{account}/{user}/{kind}" }'


@dataclass(frozen=True)
class Boundary:
    """Kill when the ``nth`` request for ``action`` arrives, ``phase`` its forwarding."""

    action: str
    phase: str
    nth: int = 1
    service: str | None = None
    what: str = ""

    def __str__(self) -> str:
        return f"{self.phase}-{self.action}#{self.nth}"


# The calls of one rotation, in order (file sink): ListAccessKeys #1 inventory (the re-check
# stands on it: PLANNED, then the CREATING intent, are journalled from what it showed),
# CreateAccessKey, GetCallerIdentity #2 and #3 (verify, signed with the new key: two
# answers in a row, [verify] consecutive), then
# GetAccessKeyLastUsed + UpdateAccessKey (deactivate) and DeleteAccessKey (delete).
IAM_BOUNDARIES = [
    Boundary("ListAccessKeys", "after", 1, what="inventory read: nothing journalled yet"),
    Boundary("CreateAccessKey", "before", what="CREATING journalled, create never reached IAM"),
    Boundary("CreateAccessKey", "after", what="key created, secret lost: orphan"),
    Boundary("GetCallerIdentity", "before", 2, what="CREATED: secret pending, verifying"),
    Boundary("GetCallerIdentity", "before", 3, what="CREATED: one answer of two in a row"),
    Boundary("GetAccessKeyLastUsed", "before", what="PROMOTED"),
    Boundary("UpdateAccessKey", "before", what="PROMOTED, last use checked"),
    Boundary("UpdateAccessKey", "after", what="deactivated in IAM, not journalled"),
    Boundary("DeleteAccessKey", "before", what="DEACTIVATED"),
    Boundary("DeleteAccessKey", "after", what="deleted in IAM, not journalled"),
]
SINK_BOUNDARIES = [
    Boundary("CreateSecret", "after", what="secret container made, value not stored"),
    Boundary("PutSecretValue", "before", what="key created, secret never stored: orphan"),
    Boundary("PutSecretValue", "after", what="secret pending, CREATED not journalled: adopt"),
    Boundary("UpdateSecretVersionStage", "after", 1, what="AWSCURRENT moved, label left"),
    Boundary("UpdateSecretVersionStage", "after", 2, what="promoted in the sink only"),
]
CASES = [pytest.param("file", b, id=f"file-{b}") for b in IAM_BOUNDARIES] + [
    pytest.param("secretsmanager", b, id=f"sm-{b}") for b in IAM_BOUNDARIES + SINK_BOUNDARIES
]


@pytest.fixture
def proxy(aws_env: str) -> Iterator[FaultProxy]:
    with FaultProxy(aws_env) as proxy:
        yield proxy


@pytest.fixture
def crash_cli(cli: Cli, proxy: FaultProxy) -> Cli:
    cli.endpoint = proxy.url
    return cli


def seed(sandbox: MotoSandbox, *users: str) -> dict[str, str]:
    originals = {u: sandbox.create_user(u, path="/ci/", keys=1)[0]["AccessKeyId"] for u in users}
    time.sleep(1.1)
    return originals


def killer(box: dict[str, subprocess.Popen[str]]) -> None:
    os.kill(box["proc"].pid, signal.SIGKILL)


def recover(cli: Cli) -> None:
    """The next sweep. The killed run's lease is still in the journal, unexpired (the
    default lease_ttl is 5 minutes): its owner is a process of this machine that no longer
    runs, so the next run takes it over at once."""
    result = cli("run")
    assert result.code == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("sink", "boundary"), CASES)
def test_a_sweep_killed_at_a_step_boundary_is_repaired_by_the_next(
    crash_cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy, sink: str, boundary: Boundary
) -> None:
    if sink == "secretsmanager":
        crash_cli.write_policy(sink=SM_SINK)
    originals = seed(sandbox, "ci-app")
    box: dict[str, subprocess.Popen[str]] = {}

    def match(request: Request) -> bool:
        return boundary.service is None or request.service == boundary.service

    proxy.on(
        boundary.action,
        phase=boundary.phase,
        nth=boundary.nth,  # type: ignore[arg-type]
        callback=lambda: killer(box),
        match=match,
    )
    box["proc"] = crash_cli.popen("run", "--config", str(crash_cli.config))
    box["proc"].communicate(timeout=60)
    assert proxy.counts()["hooks_fired"] == 1, f"never reached {boundary}"
    assert box["proc"].returncode == -signal.SIGKILL

    recover(crash_cli)
    assert_rotated_once_and_whole(crash_cli, sandbox, ["ci-app"], sink=sink, originals=originals)
    tally.add(crash_cases_run=1, crashes_survived=1)


@pytest.mark.parametrize("seed_value", range(6))
def test_a_sweep_killed_at_a_random_moment_is_repaired(
    crash_cli: Cli, sandbox: MotoSandbox, seed_value: int
) -> None:
    """Three users rotated concurrently; SIGKILL lands wherever the seeded clock says."""
    users = ["ci-a", "ci-b", "ci-c"]
    originals = seed(sandbox, *users)
    delay = random.Random(seed_value).uniform(0.6, 2.5)
    proc = crash_cli.popen("run", "--config", str(crash_cli.config))
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    recover(crash_cli)
    assert_rotated_once_and_whole(crash_cli, sandbox, users, sink="file", originals=originals)
    killed = proc.returncode == -signal.SIGKILL
    tally.add(random_kill_cases_run=1, random_kills_landed_mid_sweep=int(killed))
