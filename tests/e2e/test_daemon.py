"""End to end: ``rotator daemon`` as a real subprocess against the moto server.

It sweeps on its schedule, serves ``/healthz`` and ``/metrics``, drains on SIGTERM without
leaving a step half done, reloads its policy on SIGHUP (keeping the old one if the new is
bad), and posts its notifications to a real local webhook.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

import rotator
from rotator import app as application
from rotator.daemon.jobs import scoped
from rotator.model import Action
from tests.support import tally
from tests.support.cli import Cli
from tests.support.daemon import Daemon, IdleFlood, named
from tests.support.faults import FaultPlan, FaultProxy
from tests.support.invariants import assert_rotated_once_and_whole
from tests.support.moto import MotoSandbox
from tests.support.webhook import webhook_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def start(cli: Cli) -> Iterator[Callable[..., Daemon]]:
    """Start ``rotator daemon`` on the CLI's policy; every daemon is stopped at the end."""
    running: list[Daemon] = []

    def launch(*args: str, nofile: int | None = None) -> Daemon:
        running.append(Daemon.launch(cli, *args, nofile=nofile))
        return running[-1]

    yield launch
    for daemon in running:
        daemon.kill()


DAEMON = """
[daemon]
listen_port = 0
{extra}
"""


def policy(cli: Cli, daemon: str = "", rule: str = "", **timings: str) -> None:
    """The standard test policy, rotating 120-day-old keys, with ``[daemon]`` settings."""
    cli.write_policy(max_age="90d", extra=rule + DAEMON.format(extra=daemon), **timings)


def seed(sandbox: MotoSandbox, users: list[str], **tags: str) -> dict[str, str]:
    keys = {}
    for user in users:
        keys[user] = sandbox.create_user(user, path="/ci/", tags=tags or None, keys=1)[0][
            "AccessKeyId"
        ]
        sandbox.age_keys(user, days=120)
    return keys


def test_sweeps_on_schedule_and_serves_health_and_metrics(
    cli: Cli, sandbox: MotoSandbox, start: Callable[..., Daemon]
) -> None:
    old = seed(sandbox, ["ci-a", "ci-b"])
    policy(cli, 'interval = "1s"')
    began = time.time()
    daemon = start()  # no --run-now: the first sweep is the scheduled one
    daemon.wait_metric("rotator_sweeps_total", 2, result="ok")
    status, body = daemon.get("/healthz")
    assert status == 200, body
    health = json.loads(body)
    assert health["status"] == "ok" and health["scheduler"] == "running"
    assert health["last_sweep"]["ok"] is True
    assert daemon.metric("rotator_sweeps_total", result="crashed") == 0
    for outcome in ("started", "completed"):
        assert daemon.metric("rotator_rotations_total", kind="access-key", outcome=outcome) == 2
    create = {"kind": "access-key", "step": "create"}
    assert daemon.metric("rotator_step_duration_seconds_count", **create) == 2
    assert daemon.metric("rotator_steps_total", outcome="done", **create) == 2
    assert daemon.metric("rotator_held_rotations", kind="access-key") == 0
    assert daemon.metric("rotator_rotations_total", kind="access-key", outcome="failed") == 0
    openmetrics = urllib.request.Request(
        daemon.url + "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"}
    )
    with urllib.request.urlopen(openmetrics, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
        exposition = answer.read().decode()
    families = {f.name: f for f in openmetrics_families(exposition)}
    (build,) = families["rotator_build"].samples
    assert build.labels["version"] == rotator.__version__
    assert daemon.metric("rotator_last_successful_sweep_timestamp_seconds") >= began
    assert daemon.get("/nowhere")[0] == 404
    for user in old:
        (key,) = sandbox.keys(user)
        assert key != old[user], "rotated by the scheduled sweep"

    assert daemon.stop() == 0, daemon.output
    assert named(daemon.events(), "daemon.stopped")[-1]["clean"] is True


def test_idle_connections_cannot_exhaust_the_daemon_s_file_descriptors(
    cli: Cli, sandbox: MotoSandbox, start: Callable[..., Daemon]
) -> None:
    """The issue: with a limit of 256 file descriptors, idle connections to /healthz made
    sweeps fail with 'Too many open files'. Here 300 idle clients, reconnecting whenever
    the daemon closes them, hammer a daemon limited to 256 while it sweeps every second:
    /healthz still answers, the sweeps' own sockets to AWS still open, keys rotate."""
    policy(cli, 'interval = "1s"')
    daemon = start(nofile=256)
    daemon.wait_metric("rotator_sweeps_total", 1, result="ok")
    baseline = daemon.open_files  # for the message, if it fails
    with IdleFlood(daemon.address, size=300) as flood:
        flood.wait_for(closed=256)  # the daemon has already cycled through its limit
        daemon.tries = 5  # a probe may be made room for before its request is read
        old = seed(sandbox, ["ci-a", "ci-b", "ci-c"])  # due: the next sweep rotates them
        most_files = 0
        for _ in range(10):
            status, body = daemon.get("/healthz")
            assert status == 200, body
            most_files = max(most_files, daemon.open_files)
        oks = daemon.metric("rotator_sweeps_total", result="ok")
        assert oks is not None
        daemon.wait_metric(
            "rotator_rotations_total", 3, kind="access-key", outcome="completed", timeout=90
        )
        daemon.wait_metric("rotator_sweeps_total", oks + 2, result="ok", timeout=90)
        most_files = max(most_files, daemon.open_files)
        flood.wait_rounds(1)
    assert daemon.metric("rotator_sweeps_total", result="crashed") == 0
    # The endpoint holds at most 32 connections (and accepts 16 at a time), whatever the
    # clients do: the daemon stays far from its limit, sweeping included.
    assert most_files <= 128, (baseline, most_files)
    assert daemon.attempts < 2 * daemon.requests, "most requests were answered at once"
    assert "Too many open files" not in daemon.output
    assert named(daemon.events(), "daemon.sweep_crashed") == []
    account = sandbox.account()
    for user in old:
        (key,) = sandbox.keys(user)
        assert key != old[user]
        current = cli.sink_document(account, user)["current"]
        assert sandbox.caller_arn(key, current["SecretAccessKey"]).endswith(f"/{user}")
    assert daemon.stop() == 0, daemon.output


def test_sigterm_mid_sweep_finishes_the_sweep_in_flight_and_exits_0(
    cli: Cli, sandbox: MotoSandbox, start: Callable[..., Daemon], aws_env: str
) -> None:
    users = [f"ci-{i}" for i in range(4)]
    old = seed(sandbox, users)
    with FaultProxy(aws_env, FaultPlan(seed=5, latency=(0.1, 0.2))) as proxy:
        cli.endpoint = proxy.url  # every AWS call of the daemon is slow
        policy(cli, deactivate_after="4s")
        daemon = start("--run-now")
        daemon.wait_for(lambda es: any(e.get("step") == "create" for e in es))
        code = daemon.stop(signal.SIGTERM)
    cli.endpoint = aws_env
    assert code == 0, daemon.output
    events = daemon.events()
    order = [e["event"] for e in events if not e["event"].startswith("rotation.")]
    assert order == [
        "daemon.started",
        "sweep.started",
        "daemon.stopping",
        "sweep.finished",
        "daemon.stopped",
    ], "the signal came mid-sweep, the sweep finished, no new sweep started"
    assert named(events, "daemon.stopping")[0]["sweeps_in_flight"] == 1

    # Every rotation went through create, verify and promote, each step's outcome logged:
    # none is left between steps. They wait for deactivate_after, as a sweep leaves them.
    steps: dict[str, list[tuple[str, str]]] = {}
    for e in named(events, "rotation.step"):
        steps.setdefault(e["rotation_id"], []).append((e["step"], e["outcome"]))
    assert len(steps) == len(users)
    assert all(
        s == [("create", "done"), ("verify", "done"), ("promote", "done")] for s in steps.values()
    )
    in_flight = cli("status", "--json").items()
    assert sorted(r["state"] for r in in_flight) == ["promoted"] * len(users)

    time.sleep(4.2)
    after = cli("run", "--json")
    assert after.code == 0, after.stderr
    assert after.json()["counts"]["completed"] == len(users)
    assert cli("status", "--json").items() == []
    account = sandbox.account()
    for user in users:
        (key,) = sandbox.keys(user)
        assert key != old[user]
        current = cli.sink_document(account, user)["current"]
        assert current["AccessKeyId"] == key
        assert sandbox.caller_arn(key, current["SecretAccessKey"]).endswith(f"/{user}")


def test_a_second_signal_cancels_the_sweep_and_the_next_run_repairs_it(
    cli: Cli, sandbox: MotoSandbox, start: Callable[..., Daemon], aws_env: str
) -> None:
    """Impatience costs nothing but the exit code: the cancelled sweep is a crash the
    protocol already survives, and the next ``rotator run`` finishes every rotation."""
    users = [f"ci-{i}" for i in range(4)]
    old = seed(sandbox, users)
    # The cancelled steps' leases stay in the journal; the daemon process has exited, so
    # the next run (on this machine) takes them over at once.
    with FaultProxy(aws_env, FaultPlan(seed=7, latency=(0.1, 0.2))) as proxy:
        cli.endpoint = proxy.url
        policy(cli)
        daemon = start("--run-now")
        daemon.wait_for(lambda es: any(e.get("step") == "create" for e in es))
        daemon.send(signal.SIGTERM)
        daemon.wait_count("daemon.stopping")
        code = daemon.stop(signal.SIGTERM)
    cli.endpoint = aws_env
    assert code == 1, daemon.output
    events = daemon.events()
    assert [e.get("reason", "") for e in named(events, "daemon.stopping")][1].startswith(
        "second signal"
    )
    assert named(events, "sweep.finished") == [], "the sweep was cancelled"
    assert named(events, "daemon.stopped")[0]["clean"] is False

    after = cli("run", "--json")
    assert after.code == 0, after.stderr
    assert_rotated_once_and_whole(cli, sandbox, users, sink="file", originals=old)


def test_health_is_503_after_a_sweep_crashes(
    cli: Cli, start: Callable[..., Daemon], recorder: list[str]
) -> None:
    """AWS answers 500 to everything: the sweep cannot even start."""
    cli.env["ROTATOR_AWS__MAX_ATTEMPTS"] = "1"
    policy(cli)
    daemon = start("--run-now")
    (crashed,) = daemon.wait_count("daemon.sweep_crashed")
    assert "failed" in crashed["reason"]
    status, body = daemon.get("/healthz")
    assert status == 503
    assert "the last sweep crashed" in json.loads(body)["reason"]
    assert daemon.metric("rotator_sweeps_total", result="crashed") == 1
    assert recorder, "it did call AWS"
    assert daemon.stop() == 0, daemon.output


def test_sighup_reloads_a_valid_policy_and_keeps_the_old_one_otherwise(
    cli: Cli, start: Callable[..., Daemon]
) -> None:
    policy(cli, 'schedule = "0 3 * * *"')
    daemon = start()
    (started,) = daemon.wait_count("daemon.started")
    assert [j["schedule"] for j in started["jobs"]] == ["cron 0 3 * * *"]
    good = cli.config.read_text()
    cli.config.write_text(good.replace('max_age = "90d"', 'max_age = "9x"'))
    daemon.send(signal.SIGHUP)
    (failed,) = daemon.wait_count("daemon.reload_failed")
    assert "rule 'ci-keys': max_age: invalid duration '9x'" in failed["reason"]
    assert daemon.get("/healthz")[0] == 200, "still running the old policy"

    policy(cli, 'schedule = "0 3 * * *"', rule='schedule = "30 4 * * 1-5"\n')
    daemon.send(signal.SIGHUP)
    (reloaded,) = daemon.wait_count("daemon.reloaded")
    assert [(j["id"], j["schedule"]) for j in reloaded["jobs"]] == [
        ("sweep:ci-keys", "cron 30 4 * * 1-5")
    ]
    assert daemon.metric("rotator_policy_reloads_total", result="ok") == 1
    assert daemon.metric("rotator_policy_reloads_total", result="failed") == 1
    assert daemon.stop() == 0, daemon.output


def test_sighup_with_absurd_input_fails_the_reload_cleanly_and_keeps_running(
    cli: Cli, start: Callable[..., Daemon]
) -> None:
    """Overflowing durations and malformed rules on SIGHUP: each reload fails with
    ``daemon.reload_failed`` and the counter, never a traceback; the old jobs stay."""
    policy(cli, 'schedule = "0 3 * * *"')
    daemon = start()
    (started,) = daemon.wait_count("daemon.started")
    assert [j["schedule"] for j in started["jobs"]] == ["cron 0 3 * * *"]
    good = cli.config.read_text()
    head = good.split("[[rules]]")[0]
    bad = [
        (good.replace('max_age = "90d"', 'max_age = "99999999999999d"'), "max_age"),
        (good.replace('delete_after = "0s"', 'delete_after = "3000000d"'), "delete_after"),
        (good.replace('schedule = "0 3 * * *"', 'interval = "99999999999999d"'), "interval"),
        ("rules = [1]\n" + head, "rules[0]"),
        ('rules = ["x"]\n' + head, "rules[0]"),
    ]
    for number, (text, field) in enumerate(bad, start=1):
        cli.config.write_text(text)
        daemon.send(signal.SIGHUP)
        failed = daemon.wait_count("daemon.reload_failed", count=number)[-1]
        assert field in failed["reason"], failed
    assert daemon.get("/healthz")[0] == 200, "still running the old policy"
    assert daemon.metric("rotator_policy_reloads_total", result="failed") == len(bad)
    assert not named(daemon.events(), "daemon.reloaded")
    assert daemon.stop() == 0, daemon.output
    assert "Traceback" not in daemon.output
    tally.add(bad_input_cases=len(bad))


def test_under_systemd_it_notifies_ready_reloading_stopping_and_feeds_the_watchdog(
    cli: Cli, start: Callable[..., Daemon]
) -> None:
    """Type=notify: the daemon's datagrams, read from a real notify socket."""
    name = f"rotator-e2e-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind("\0" + name)
        notify.settimeout(30)
        cli.env["NOTIFY_SOCKET"] = "@" + name
        cli.env["WATCHDOG_USEC"] = "300000"  # WatchdogSec=300ms: a ping every 150 ms
        pings: list[float] = []

        def next_state(*wanted: str) -> list[str]:
            """The next datagram that is not a watchdog ping."""
            while True:
                fields = notify.recv(4096).decode().split("\n")
                if fields != ["WATCHDOG=1"]:
                    assert fields[0] in wanted, fields
                    return fields
                pings.append(time.monotonic())

        policy(cli, 'schedule = "0 3 * * *"')
        daemon = start()
        ready = next_state("READY=1")
        (started,) = daemon.wait_count("daemon.started")
        assert ready == ["READY=1", f"STATUS=serving {started['listen']}; 1 scheduled sweep"]
        assert daemon.get("/healthz")[0] == 200, "ready means serving"

        daemon.send(signal.SIGHUP)
        assert next_state("RELOADING=1")[1].startswith("MONOTONIC_USEC=")
        assert next_state("READY=1")[0] == "READY=1"
        daemon.wait_count("daemon.reloaded")

        began = time.monotonic()
        while time.monotonic() - began < 1.0:
            notify.recv(4096)
            pings.append(time.monotonic())
        assert len([p for p in pings if p >= began]) >= 4, "pinged every half period"

        daemon.send(signal.SIGTERM)
        assert next_state("STOPPING=1")[0] == "STOPPING=1"
        # wait, not stop(): a second SIGTERM after the handlers are gone would kill it.
        assert daemon.wait() == 0, daemon.output


def test_an_invalid_policy_exits_2_and_is_never_ready(
    cli: Cli, start: Callable[..., Daemon]
) -> None:
    """Exit code 2 is what the unit's RestartPreventExitStatus= names."""
    name = f"rotator-e2e-bad-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind("\0" + name)
        cli.env["NOTIFY_SOCKET"] = "@" + name
        policy(cli, 'schedule = "0 3 1 * 1 *"')
        daemon = start()
        assert daemon.proc.wait(timeout=60) == 2
        assert "expected 5 fields" in daemon.output
        notify.setblocking(False)
        with pytest.raises(BlockingIOError):
            notify.recv(4096)


def test_notifications_reach_a_local_webhook_one_per_sweep_and_one_per_owner(
    cli: Cli, sandbox: MotoSandbox, start: Callable[..., Daemon]
) -> None:
    seed(sandbox, ["ci-a", "ci-b"], **{"owner-email": "alice@example.com"})
    seed(sandbox, ["ci-c"])
    sandbox.create_user("ci-two", path="/ci/", keys=2)  # blocked
    policy(cli, '[notify]\nowner_tag = "owner-email"')
    with webhook_server() as hook:
        cli.env["ROTATOR_NOTIFY__WEBHOOK_URL"] = hook.url  # a secret: from the environment
        daemon = start("--run-now")
        posts = hook.wait_for(2)
        daemon.wait_count("notify.sent")
        scraped = daemon.get("/metrics")[1] + daemon.get("/healthz")[1]
        assert daemon.stop() == 0, daemon.output
    sweep, owner = sorted(posts, key=lambda p: "owner" in p["rotator"])
    assert sweep["text"].splitlines()[0].endswith("3 rotated, 0 held, 1 blocked, 0 failed")
    assert "ci-two access-key" in sweep["text"]
    assert owner["rotator"]["owner"] == "alice@example.com"
    assert owner["rotator"]["users"] == ["ci-a", "ci-b"]
    assert "ci-c" not in owner["text"]
    logged = (cli.tmp / "audit.jsonl").read_text() + daemon.output
    assert "s3cretW3bhookT0ken" not in logged, "the webhook URL is never logged"
    account = sandbox.account()
    secrets = [
        cli.sink_document(account, u)["current"]["SecretAccessKey"] for u in ("ci-a", "ci-c")
    ]
    for haystack in (json.dumps(posts), logged, scraped):
        assert not any(secret in haystack for secret in secrets), "a secret leaked"


def test_a_failing_webhook_is_logged_and_the_daemon_carries_on(
    cli: Cli, sandbox: MotoSandbox, start: Callable[..., Daemon]
) -> None:
    seed(sandbox, ["ci-a"])
    policy(cli, 'interval = "1s"')
    with webhook_server(status=500) as hook:
        cli.env["ROTATOR_NOTIFY__WEBHOOK_URL"] = hook.url
        cli.env["ROTATOR_NOTIFY__SEND_EMPTY"] = "true"
        daemon = start("--run-now")
        daemon.wait_count("sweep.finished", 2)
        failed = daemon.wait_count("notify.failed")[0]
        daemon.wait_metric("rotator_notifications_total", 1, channel="webhook", result="failed")
        status = daemon.get("/healthz")[0]
        code = daemon.stop()
    assert failed["reason"] == "webhook answered HTTP 500"
    assert status == 200, "a notification failure does not make the daemon unhealthy"
    assert code == 0, daemon.output
    assert "s3cretW3bhookT0ken" not in (cli.tmp / "audit.jsonl").read_text()


async def test_a_scoped_sweep_starts_only_its_rules_and_advances_the_others(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    """A sweep for one rule's schedule starts rotations for that rule only, and sees a
    rotation of another rule in flight as such (waiting), not as orphaned."""
    ops = """
[[rules]]
name = "ops-keys"
kind = "access-key"
max_age = "90d"
select = { path_prefix = "/ops/" }
sink = { type = "memory" }
"""
    cli.write_policy(max_age="90d", deactivate_after="1h", extra=ops)
    seed(sandbox, ["ci-a"])
    assert cli("run").code == 0  # ci-a's rotation now waits for deactivate_after
    ci_b = seed(sandbox, ["ci-b"])["ci-b"]
    sandbox.create_user("ops-a", path="/ops/", keys=1)
    sandbox.age_keys("ops-a", days=120)
    config = application.load(cli.config)
    async with application.open_engine(scoped(config, ["ops-keys"])) as engine:
        result = await engine.sweep()
    actions = {r.decision.user: r.decision.action for r in result.reports}
    assert actions == {"ci-a": Action.WAIT, "ops-a": Action.ROTATE}, "ci-b is not planned"
    assert result.ok
    assert list(sandbox.keys("ci-b")) == [ci_b]
    assert len(sandbox.keys("ops-a")) == 2, "ops-a's rotation started"
