"""Races between workers, each reproduced with a request the fault proxy holds: 0 lost
secrets, 0 extra keys, 0 double rotations, on SQLite and DynamoDB.

* A worker paused mid-call (SIGSTOP) after its lease ran out: another takes over only after
  a full lease period of silence on its own clock; when the paused one wakes, its late
  create is undone (compensation) and it never writes the sink.
* A worker whose clock is 10 minutes ahead sees a live worker's lease as long expired: it
  takes nothing over, because the holder keeps renewing.
* A sweep that acts on a plan made before another worker rotated the same key all the way:
  the journal refuses it (the target's fence moved), in the same write as the add.
* A worker whose sink write is on its way when its lease is taken over (race 1 of issue
  11, past the lease guard): the sink sees the new owner's newer fence and refuses the late
  write, so the new owner's secret survives.
* A lease shorter than two AWS calls is refused by ``validate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from rotator import app as application
from rotator.journal import create_table
from rotator.model import utcnow
from rotator.rotation.engine import Engine
from rotator.rotation.report import Result
from tests.support import tally
from tests.support.cli import Cli
from tests.support.faults import FaultProxy, Request
from tests.support.invariants import assert_rotated_once_and_whole, history, sink_current
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

LEASE = 6.0  # seconds: the floor for 1 s connect + 2 s read timeouts
JOURNALS = ["sqlite", "dynamodb"]
SM_SINK = '{ type = "secretsmanager", name = "rotator/{account}/{user}/{kind}" }'
# The DescribeSecret calls of A's create step: the sink's preflight, the look for a pending
# entry, then the first call of put_pending (the one held).
PUT_PENDING_DESCRIBE = 3


@pytest.fixture
def proxy(aws_env: str) -> Iterator[FaultProxy]:
    with FaultProxy(aws_env) as proxy:
        yield proxy


def race_cli(cli: Cli, proxy: FaultProxy, journal: str) -> Cli:
    """The CLI behind the proxy, with a short lease (timeouts cut to match its floor)."""
    cli.endpoint = proxy.url
    cli.write_policy(max_age="90d")
    cli.env.update(
        ROTATOR_JOURNAL__LEASE_TTL=f"{int(LEASE)}s",
        ROTATOR_AWS__CONNECT_TIMEOUT="1",
        ROTATOR_AWS__READ_TIMEOUT="2",
    )
    if journal == "dynamodb":
        cli.env["ROTATOR_JOURNAL__URL"] = "dynamodb://rotator-journal"
        init = cli("journal", "init")
        assert init.code == 0, init.stderr
    return cli


def seed(sandbox: MotoSandbox) -> dict[str, str]:
    key = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    sandbox.age_keys("ci-app", days=120)  # due under max_age 90d; its successor is not
    return {"ci-app": key}


def count_race(cli: Cli, sandbox: MotoSandbox, sink: str = "file") -> None:
    """Add this race's outcome to the robustness tally (0s expected everywhere)."""
    keys = sandbox.keys("ci-app")
    rotations = [r for r in history(cli) if r["state"] == "completed"]
    current = sink_current(cli, sandbox, "ci-app", sink)
    works = current is not None and sandbox.caller_arn(
        current["AccessKeyId"], current["SecretAccessKey"]
    ).endswith("/ci-app")
    tally.add(
        races_run=1,
        races_lost_secrets=0 if works and list(keys) == [current["AccessKeyId"]] else 1,
        races_extra_keys=max(0, len(keys) - 1),
        races_double_rotations=max(0, len(rotations) - 1),
    )


@pytest.mark.parametrize("journal", JOURNALS)
@pytest.mark.parametrize(
    "phase",
    [
        pytest.param("before", id="create-applied-late-double-create"),
        pytest.param("after", id="answer-late-lost-secret"),
    ],
)
def test_a_paused_worker_never_leaves_an_extra_key_nor_loses_a_secret(
    cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy, journal: str, phase: str
) -> None:
    """Worker A is stopped while its CreateAccessKey is in flight — held before IAM sees
    it, or applied with the answer held back — long past its lease. B then sweeps: it
    watches A's lease for a full lease period, takes over and rotates. A wakes up: its call
    has timed out, its lease is gone, and it stops without touching IAM or the sink again.
    A create that IAM applied only after B finished leaves a key nobody knows the secret of;
    the next sweep recognises it (made during the rotation, referenced by none) and
    deletes it."""
    cli = race_cli(cli, proxy, journal)
    originals = seed(sandbox)
    held = proxy.hold("CreateAccessKey", phase=phase)  # type: ignore[arg-type]
    a = cli.popen("run", "--json", "--config", str(cli.config))
    try:
        held.wait()
        os.kill(a.pid, signal.SIGSTOP)
        time.sleep(LEASE + 0.5)  # A's lease now looks expired: B will watch it
        b = cli("run", "--json")
        assert b.code == 0, b.stdout + b.stderr
        (report,) = b.json()["results"]
        assert report["outcome"] == "completed", report
    finally:
        held.release()
        # A's create reaches IAM (phase "before") and is answered before A runs again and
        # before the next sweep looks: on a loaded machine this can take a while.
        answered = held.answered.wait(60)
        os.kill(a.pid, signal.SIGCONT)
    assert answered, "A's held CreateAccessKey was never answered"
    out, err = a.communicate(timeout=60)
    assert a.returncode == 0, out + err
    (late,) = json.loads(out)["results"]
    assert late["outcome"] == "waiting", late  # stopped: the rotation was B's
    # Its lease ran out (the guard) or was taken over (the journal): either way it stopped.
    assert (
        "this worker's lease ran out" in late["detail"]
        or "was taken over and let go meanwhile" in late["detail"]
    ), late
    events = cli.audit_events()
    assert len([e for e in events if e["event"] == "rotation.taken_over"]) == 1
    after = cli("run", "--json")
    assert after.code == 0, after.stdout + after.stderr
    (cleanup,) = after.json()["results"]
    if phase == "before":  # A's create was applied after B had finished
        assert cleanup["outcome"] == "cleaned", (cleanup, proxy.counts())
    else:  # applied before B looked: B deleted it as an orphan during its own create
        assert cleanup["outcome"] == "skipped", cleanup
        b_create = [e for e in events if e.get("step") == "create" and e["outcome"] == "done"]
        assert "deleted orphan" in b_create[-1]["reason"]
    assert_rotated_once_and_whole(cli, sandbox, ["ci-app"], sink="file", originals=originals)
    count_race(cli, sandbox)


def signed_with_a_new_key(request: Request) -> bool:
    """A request signed with a key other than the test's own: a verification."""
    return "Credential=testing/" not in request.headers.get("authorization", "")


@pytest.mark.parametrize("journal", JOURNALS)
def test_a_late_sink_write_after_a_takeover_is_refused_by_the_sink(
    cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy, journal: str
) -> None:
    """Race 1 of issue 11, past the lease guard. A has checked its lease and sent the
    first call of its put_pending (held) when it is paused long past its lease. B watches a
    full lease period, takes over, deletes A's key as an orphan, creates K_B and stores it
    pending; B is held at the answer of its verification. A wakes and its write goes on:
    the sink holds B's newer fence and refuses it (LeaseLost), so B's pending entry is
    intact and B promotes it. Without the sink's fence A's entry would replace K_B's, B's
    promote would fail ("neither pending nor current") and K_B's secret would be lost."""
    cli = race_cli(cli, proxy, journal)
    cli.write_policy(max_age="90d", sink=SM_SINK)
    originals = seed(sandbox)
    held_a = proxy.hold("DescribeSecret", phase="before", nth=PUT_PENDING_DESCRIBE)
    held_b = proxy.hold("GetCallerIdentity", phase="after", match=signed_with_a_new_key)
    a = cli.popen("run", "--json", "--config", str(cli.config))
    b = None
    try:
        held_a.wait()
        os.kill(a.pid, signal.SIGSTOP)
        time.sleep(LEASE + 0.5)  # A's lease now looks expired: B will watch it
        # B's verification is held while A's late write goes on: B must not time out.
        lease_a = cli.env["ROTATOR_JOURNAL__LEASE_TTL"]
        cli.env.update(ROTATOR_AWS__READ_TIMEOUT="10", ROTATOR_JOURNAL__LEASE_TTL="22s")
        b = cli.popen("run", "--json", "--config", str(cli.config))
        cli.env.update(ROTATOR_AWS__READ_TIMEOUT="2", ROTATOR_JOURNAL__LEASE_TTL=lease_a)
        held_b.wait(90)  # B took over and stored K_B pending
        held_a.release()
        held_a.answered.wait(10)
        os.kill(a.pid, signal.SIGCONT)
        out, err = a.communicate(timeout=60)
    finally:
        held_a.release()
        held_b.release()
        with contextlib.suppress(ProcessLookupError):
            os.kill(a.pid, signal.SIGCONT)
    assert b is not None
    b_out, b_err = b.communicate(timeout=60)
    assert b.returncode == 0, b_out + b_err
    (report,) = json.loads(b_out)["results"]
    assert report["outcome"] == "completed", report  # K_B's pending entry was intact
    assert_rotated_once_and_whole(
        cli, sandbox, ["ci-app"], sink="secretsmanager", originals=originals
    )
    count_race(cli, sandbox, "secretsmanager")
    assert a.returncode == 0, out + err
    (late,) = json.loads(out)["results"]
    assert late["outcome"] == "waiting", late
    assert "newer than this worker's" in late["detail"], late  # the sink refused it


@pytest.mark.parametrize("journal", JOURNALS)
def test_a_sweep_acting_on_a_stale_plan_never_rotates_a_key_twice(
    cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy, journal: str
) -> None:
    """B's look at the user's keys (its inventory, which its re-check stands on) is
    answered late; meanwhile A rotates the key all the way (and finishes). B's re-check
    sees A's rotation in the journal, looks at IAM again and finds the key changed."""
    cli = race_cli(cli, proxy, journal)
    # B's answer is held while A runs: B must not time out and retry meanwhile.
    cli.env.update(ROTATOR_AWS__READ_TIMEOUT="10", ROTATOR_JOURNAL__LEASE_TTL="22s")
    originals = seed(sandbox)
    # ListAccessKeys #1 is B's inventory: B's last look before it would journal.
    held = proxy.hold("ListAccessKeys", phase="after", nth=1)
    b = cli.popen("run", "--json", "--config", str(cli.config))
    try:
        held.wait()
        a = cli("run", "--json")
        assert a.code == 0, a.stdout + a.stderr
        assert [r["outcome"] for r in a.json()["results"]] == ["completed"]
    finally:
        held.release()
    out, err = b.communicate(timeout=60)
    assert b.returncode == 0, out + err
    (stale,) = json.loads(out)["results"]
    assert stale["outcome"] == "stale", stale
    assert "changed since planning" in stale["detail"], stale
    assert_rotated_once_and_whole(cli, sandbox, ["ci-app"], sink="file", originals=originals)
    count_race(cli, sandbox)


@pytest.mark.parametrize("journal", JOURNALS)
async def test_a_worker_whose_clock_is_ahead_takes_nothing_from_a_live_one(
    cli: Cli,
    sandbox: MotoSandbox,
    proxy: FaultProxy,
    journal: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A's CreateAccessKey is held; B's clock is 10 minutes ahead, so A's lease looks long
    expired to B. B watches it and sees A renew: B waits, and A finishes the rotation."""
    cli.endpoint = proxy.url
    cli.write_policy(max_age="90d")
    settings = {
        "ROTATOR_JOURNAL__LEASE_TTL": "22s",  # the floor for 1 s + 10 s timeouts
        "ROTATOR_AWS__CONNECT_TIMEOUT": "1",
        "ROTATOR_AWS__READ_TIMEOUT": "10",
    }
    if journal == "dynamodb":
        await create_table("rotator-journal", region=None)
        settings["ROTATOR_JOURNAL__URL"] = "dynamodb://rotator-journal"
    cli.env.update(settings)
    for name, value in {**settings, "AWS_ENDPOINT_URL": proxy.url}.items():
        monkeypatch.setenv(name, value)
    config = application.load(cli.config)
    originals = seed(sandbox)
    held = proxy.hold("CreateAccessKey", phase="before")
    ahead = timedelta(minutes=10)
    async with (
        application.open_journal_for(config) as ja,
        application.open_journal_for(config) as jb,
    ):
        a = Engine(config=config, journal=ja, aws=application.make_aws(config))
        b = Engine(
            config=config,
            journal=jb,
            aws=application.make_aws(config),
            clock=lambda: utcnow() + ahead,
        )
        a_sweep = asyncio.create_task(a.sweep())
        await asyncio.to_thread(held.wait)
        try:
            b_result = await b.sweep()
        finally:
            held.release()
        a_result = await a_sweep
    (waited,) = b_result.reports
    assert waited.result is Result.WAITING, waited
    assert [r.result for r in a_result.reports] == [Result.COMPLETED]
    assert_rotated_once_and_whole(cli, sandbox, ["ci-app"], sink="file", originals=originals)
    count_race(cli, sandbox)


@pytest.mark.parametrize("ttl", ["0s", "5s"])
def test_a_lease_shorter_than_two_aws_calls_is_refused(cli: Cli, ttl: str) -> None:
    cli.env["ROTATOR_JOURNAL__LEASE_TTL"] = ttl
    result = cli("validate")
    assert result.code == 2
    assert f"journal.lease_ttl {ttl} is below 1m20s" in result.stderr
    assert "aws.connect_timeout + aws.read_timeout" in result.stderr
