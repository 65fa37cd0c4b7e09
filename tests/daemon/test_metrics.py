"""rotator.daemon.metrics: what a sweep and the audit log's step events add to the registry."""

from __future__ import annotations

import json
import platform
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import rotator
from rotator import audit
from rotator.daemon.metrics import (
    ROTATION_OUTCOMES,
    STEP_OUTCOMES,
    Metrics,
    oldest_ages,
    rotation_outcomes,
)
from rotator.model import (
    Action,
    Credential,
    Holder,
    Inventory,
    Kind,
    Outcome,
    Rotation,
    Status,
    Step,
)
from rotator.rotation.report import Result
from tests.support.sweeps import ACCOUNT, NOW, plain, rotated, sweep


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def mixed() -> list:
    return [
        rotated("ci-a"),  # started and completed
        rotated("ci-b", (Step.CREATE, Step.VERIFY, Step.PROMOTE)),  # started, waits
        rotated(
            "ci-c",
            (Step.DEACTIVATE,),
            last=Outcome.HELD,
            reason="old key used after the promotion",
            action=Action.ADVANCE,
        ),
        plain("ci-d", Action.BLOCK, Result.BLOCKED, "2 active access keys"),
        rotated("ci-e", (Step.CREATE,), last=Outcome.FAILED, reason="LimitExceeded"),
        plain("ci-f", Action.DISABLE, Result.DISABLED, "unused for 120d"),
        plain("ci-g", Action.SKIP, Result.SKIPPED, "not due"),
    ]


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, ["started", "completed"]),
        (1, ["started"]),
        (2, ["held"]),
        (3, ["blocked"]),
        (4, ["started", "failed"]),
        (5, ["disabled"]),
        (6, []),
    ],
)
def test_each_report_counts_as_the_rotation_outcomes_it_reached(
    index: int, expected: list[str]
) -> None:
    assert rotation_outcomes(mixed()[index]) == expected


def test_a_sweep_counts_rotations_by_kind_and_outcome_and_sets_the_gauges() -> None:
    metrics = Metrics(kinds=[Kind.ACCESS_KEY])
    result = sweep(*mixed(), seconds=3.5)
    metrics.observe_sweep(result)
    counted = {
        outcome: value(metrics, "rotator_rotations_total", kind="access-key", outcome=outcome)
        for outcome in ("started", "completed", "held", "blocked", "failed", "disabled")
    }
    assert counted == {
        "started": 3,
        "completed": 1,
        "held": 1,
        "blocked": 1,
        "failed": 1,
        "disabled": 1,
    }
    assert value(metrics, "rotator_sweeps_total", result="problems") == 1
    assert value(metrics, "rotator_sweeps_total", result="ok") == 0
    assert value(metrics, "rotator_held_rotations", kind="access-key") == 1
    assert value(metrics, "rotator_blocked_credentials", kind="access-key") == 1
    assert value(metrics, "rotator_last_sweep_duration_seconds") == 3.5
    assert value(metrics, "rotator_last_successful_sweep_timestamp_seconds") == (
        result.finished_at.timestamp()
    )


def test_held_and_blocked_are_gauges_of_the_last_sweep_not_totals() -> None:
    metrics = Metrics(kinds=[Kind.ACCESS_KEY])
    metrics.observe_sweep(sweep(*mixed()))
    metrics.observe_sweep(sweep(rotated("ci-a")))
    assert value(metrics, "rotator_held_rotations", kind="access-key") == 0
    assert value(metrics, "rotator_blocked_credentials", kind="access-key") == 0
    assert value(metrics, "rotator_sweeps_total", result="ok") == 1
    assert value(metrics, "rotator_rotations_total", kind="access-key", outcome="started") == 4


def test_a_crashed_sweep_is_counted_and_leaves_the_last_success_alone() -> None:
    metrics = Metrics()
    metrics.observe_sweep(sweep(rotated("ci-a")))
    before = value(metrics, "rotator_last_successful_sweep_timestamp_seconds")
    metrics.observe_crash()
    assert value(metrics, "rotator_sweeps_total", result="crashed") == 1
    assert value(metrics, "rotator_last_successful_sweep_timestamp_seconds") == before


def test_the_oldest_active_credential_age_is_kept_per_kind() -> None:
    def cred(kind: Kind, days: int, status: Status = Status.ACTIVE) -> Credential:
        return Credential(
            kind=kind,
            credential_id=f"ID{kind}{days}",
            status=status,
            created=NOW - timedelta(days=days),
        )

    inventory = Inventory(
        account=ACCOUNT,
        holders=(
            Holder(
                account=ACCOUNT,
                name="a",
                arn="arn:a",
                credentials=(
                    cred(Kind.ACCESS_KEY, 30),
                    cred(Kind.ACCESS_KEY, 400, Status.INACTIVE),  # inactive: not counted
                ),
            ),
            Holder(
                account=ACCOUNT,
                name="b",
                arn="arn:b",
                credentials=(cred(Kind.ACCESS_KEY, 95), cred(Kind.SSH_PUBLIC_KEY, 10)),
            ),
        ),
    )
    day = 86400.0
    assert oldest_ages(inventory, NOW) == {Kind.ACCESS_KEY: 95 * day, Kind.SSH_PUBLIC_KEY: 10 * day}
    metrics = Metrics()
    metrics.observe_sweep(sweep(rotated("ci-a")), inventory)
    # The gauge is taken at the sweep's end (2 s after NOW).
    assert value(metrics, "rotator_oldest_credential_age_seconds", kind="access-key") == (
        95 * day + 2
    )


def test_step_events_feed_step_counts_and_latency_and_are_still_logged(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    close = audit.configure(stream="none", file=log)
    metrics = Metrics()
    metrics.install_tap()
    rotation = Rotation.start(
        account=ACCOUNT, user="ci-a", kind=Kind.ACCESS_KEY, rule="ci-keys", now=NOW
    )
    audit.step_event(Step.CREATE, Outcome.DONE, rotation=rotation, duration_ms=1500)
    audit.step_event(Step.CREATE, Outcome.DONE, rotation=rotation, duration_ms=300)
    audit.step_event(Step.DEACTIVATE, Outcome.HELD, rotation=rotation, duration_ms=40)
    audit.get_logger().info(audit.SWEEP_STARTED, rules=1)  # not a step: ignored
    close()
    labels = {"kind": "access-key", "step": "create"}
    assert value(metrics, "rotator_steps_total", outcome="done", **labels) == 2
    assert value(metrics, "rotator_step_duration_seconds_count", **labels) == 2
    assert value(metrics, "rotator_step_duration_seconds_sum", **labels) == pytest.approx(1.8)
    assert value(metrics, "rotator_step_duration_seconds_bucket", le="0.5", **labels) == 1
    held = {"kind": "access-key", "step": "deactivate", "outcome": "held"}
    assert value(metrics, "rotator_steps_total", **held) == 1
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["rotation.step"] * 3 + ["sweep.started"]
    assert lines[0]["duration_ms"] == 1500


def test_a_verified_credential_feeds_the_verification_histogram(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    close = audit.configure(stream="none", file=log)
    metrics = Metrics(kinds=[Kind.ACCESS_KEY])
    metrics.install_tap()
    rotation = Rotation.start(
        account=ACCOUNT, user="ci-a", kind=Kind.ACCESS_KEY, rule="ci-keys", now=NOW
    )
    audit.step_event(
        Step.VERIFY, Outcome.DONE, rotation=rotation, duration_ms=12500, propagation_s=12.4
    )
    audit.step_event(Step.VERIFY, Outcome.RETRY, rotation=rotation, duration_ms=60000)
    close()
    labels = {"kind": "access-key"}
    assert value(metrics, "rotator_verification_seconds_count", **labels) == 1
    assert value(metrics, "rotator_verification_seconds_sum", **labels) == pytest.approx(12.4)
    assert value(metrics, "rotator_verification_seconds_bucket", le="10.0", **labels) == 0
    assert value(metrics, "rotator_verification_seconds_bucket", le="20.0", **labels) == 1
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0]["propagation_s"] == 12.4
    assert "propagation_s" not in lines[1]


def test_a_broken_metrics_feed_never_stops_the_audit_log(tmp_path: Path) -> None:
    class Broken(Metrics):
        def observe_step(self, event: object) -> None:
            raise RuntimeError("metrics broke")

    log = tmp_path / "audit.jsonl"
    close = audit.configure(stream="none", file=log)
    Broken().install_tap()
    rotation = Rotation.start(
        account=ACCOUNT, user="ci-a", kind=Kind.ACCESS_KEY, rule="ci-keys", now=NOW
    )
    audit.step_event(Step.CREATE, Outcome.DONE, rotation=rotation, duration_ms=10)
    close()
    assert json.loads(log.read_text())["step"] == "create"


def test_the_exposition_parses_and_names_no_user_or_credential() -> None:
    metrics = Metrics(kinds=[Kind.ACCESS_KEY])
    reports = mixed()
    metrics.observe_sweep(sweep(*reports))
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    text = body.decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "rotator_sweeps",
        "rotator_rotations",
        "rotator_steps",
        "rotator_step_duration_seconds",
        "rotator_held_rotations",
        "rotator_blocked_credentials",
        "rotator_oldest_credential_age_seconds",
        "rotator_last_successful_sweep_timestamp_seconds",
        "rotator_notifications",
        "rotator_policy_reloads",
    } <= names
    for report in reports:
        assert report.decision.user not in text
        assert str(report.decision.credential_id) not in text


def test_build_info_names_the_version() -> None:
    metrics = Metrics()
    labels = {"version": rotator.__version__, "python": platform.python_version()}
    assert value(metrics, "rotator_build_info", **labels) == 1


def test_every_known_label_value_is_there_from_the_start_at_zero() -> None:
    """So that ``increase(...[1h]) > 0`` sees the first failure: a series born at 1 has
    no increase."""
    metrics = Metrics(
        kinds=[Kind.ACCESS_KEY, Kind.SSH_PUBLIC_KEY],
        channels={"webhook": ("sent", "failed"), "owner-tags": ("failed",)},
    )
    for kind in ("access-key", "ssh-public-key"):
        for outcome in ROTATION_OUTCOMES:
            assert value(metrics, "rotator_rotations_total", kind=kind, outcome=outcome) == 0
        for step, outcome in STEP_OUTCOMES:
            labels = {"kind": kind, "step": step, "outcome": outcome}
            assert value(metrics, "rotator_steps_total", **labels) == 0
        for step in ("create", "verify", "promote", "deactivate", "delete"):
            labels = {"kind": kind, "step": step}
            assert value(metrics, "rotator_step_duration_seconds_count", **labels) == 0
        assert value(metrics, "rotator_held_rotations", kind=kind) == 0
        assert value(metrics, "rotator_blocked_credentials", kind=kind) == 0
        assert value(metrics, "rotator_verification_seconds_count", kind=kind) == 0
    assert ("deactivate", "held") in STEP_OUTCOMES
    assert ("create", "failed") in STEP_OUTCOMES
    for result in ("sent", "failed"):
        assert value(metrics, "rotator_notifications_total", channel="webhook", result=result) == 0
    assert value(metrics, "rotator_notifications_total", channel="owner-tags", result="failed") == 0
    assert value(metrics, "rotator_notifications_total", channel="sns", result="sent") is None
    for result in ("ok", "problems", "crashed"):
        assert value(metrics, "rotator_sweeps_total", result=result) == 0
    for result in ("ok", "failed"):
        assert value(metrics, "rotator_policy_reloads_total", result=result) == 0
    assert value(metrics, "rotator_sweeps_in_progress") == 0


def test_presetting_again_keeps_what_was_counted() -> None:
    metrics = Metrics(kinds=[Kind.ACCESS_KEY])
    metrics.observe_sweep(sweep(*mixed()))
    metrics.preset([Kind.ACCESS_KEY, Kind.LOGIN_PROFILE], {})  # a reload added a kind
    assert value(metrics, "rotator_held_rotations", kind="access-key") == 1
    assert value(metrics, "rotator_rotations_total", kind="access-key", outcome="started") == 3
    assert value(metrics, "rotator_rotations_total", kind="login-profile", outcome="started") == 0


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("", "text/plain; version=0.0.4; charset=utf-8"),
        ("text/plain", "text/plain; version=0.0.4; charset=utf-8"),
        (
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    ],
)
def test_the_format_follows_the_accept_header(accept: str, content_type: str) -> None:
    """Prometheus asks for OpenMetrics first; anything else gets the classic text."""
    metrics = Metrics(kinds=[Kind.ACCESS_KEY])
    metrics.observe_sweep(sweep(*mixed()))
    body, served = metrics.render(accept)
    assert served.startswith(content_type)
    text = body.decode()
    if served.startswith("application/openmetrics-text"):
        assert text.endswith("# EOF\n")
        families = {f.name: f for f in openmetrics_families(text)}
        assert families["rotator_build"].type == "info"
        assert families["rotator_sweeps"].type == "counter"
    else:
        families = {f.name: f for f in text_string_to_metric_families(text)}
    started = {"kind": "access-key", "outcome": "started"}
    (sample,) = [
        s
        for s in families["rotator_rotations"].samples
        if s.name == "rotator_rotations_total" and s.labels == started
    ]
    assert sample.value == 3
