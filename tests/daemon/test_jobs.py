"""rotator.cron and rotator.daemon.jobs: crontab read as cron reads it, one job per
schedule, and sweeps scoped to their rules. Pure: no scheduler runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from rotator.cron import cron_trigger, weekdays
from rotator.daemon.jobs import jobs, run_now, scoped, trigger
from rotator.errors import ConfigError
from rotator.settings import Config, load_config

THURSDAY = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # 2026-01-01 is a Thursday


def next_fire(expr: str, after: datetime = THURSDAY) -> datetime:
    fired = cron_trigger(expr).get_next_fire_time(None, after)
    assert fired is not None
    return fired


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 3 * * *", datetime(2026, 1, 2, 3, 0, tzinfo=UTC)),
        ("0 3 * * 0", datetime(2026, 1, 4, 3, 0, tzinfo=UTC)),  # 0 = Sunday, as in cron
        ("0 3 * * 7", datetime(2026, 1, 4, 3, 0, tzinfo=UTC)),  # 7 = Sunday too
        ("0 3 * * 1", datetime(2026, 1, 5, 3, 0, tzinfo=UTC)),  # 1 = Monday
        ("30 13 * * 1-5", datetime(2026, 1, 1, 13, 30, tzinfo=UTC)),
        ("0 0 * * sat-sun", datetime(2026, 1, 3, 0, 0, tzinfo=UTC)),
        ("0 0 * * 5-0", datetime(2026, 1, 2, 0, 0, tzinfo=UTC)),  # Friday to Sunday
        ("*/15 * * * *", datetime(2026, 1, 1, 12, 15, tzinfo=UTC)),
        ("0 6 1 * *", datetime(2026, 2, 1, 6, 0, tzinfo=UTC)),
    ],
)
def test_crontab_expressions_fire_when_cron_would(expr: str, expected: datetime) -> None:
    assert next_fire(expr, THURSDAY + timedelta(seconds=1)) == expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("1,3,5", "mon,wed,fri"),
        ("*/2", "tue,thu,sat,sun"),
        ("sat,sun", "sat,sun"),
        ("0-2", "mon,tue,sun"),
    ],
)
def test_weekday_fields_become_names(field: str, expected: str) -> None:
    assert weekdays(field) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * *", "expected 5 fields"),
        ("61 * * * *", "higher than the maximum"),
        ("0 0 * * 8", "invalid day of week '8'"),
        ("0 0 * * 5-2", "the start is after the end"),
        ("0 0 * * */0", "invalid step"),
        ("x * * * *", "Unrecognized expression"),
    ],
)
def test_bad_crontab_expressions_are_refused_with_a_reason(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cron_trigger(expr)


POLICY = """\
[journal]
url = "memory://"
{daemon}
[[rules]]
name = "ci-keys"
kind = "access-key"
sink = {{ type = "memory" }}
{a}
[[rules]]
name = "vendor-keys"
kind = "access-key"
select = {{ path_prefix = "/vendor/" }}
sink = {{ type = "memory" }}
{b}
[[rules]]
name = "ops-keys"
kind = "access-key"
select = {{ path_prefix = "/ops/" }}
sink = {{ type = "memory" }}
{c}
"""


def config(tmp_path: Path, *, daemon: str = "", a: str = "", b: str = "", c: str = "") -> Config:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY.format(daemon=daemon, a=a, b=b, c=c))
    return load_config(path)


def test_one_job_sweeps_every_rule_by_default_hourly(tmp_path: Path) -> None:
    (job,) = jobs(config(tmp_path))
    assert (job.id, job.cron, job.rules) == ("sweep", "0 * * * *", None)


def test_rules_with_a_schedule_get_a_job_per_schedule_the_rest_the_daemon_s(
    tmp_path: Path,
) -> None:
    found = jobs(
        config(
            tmp_path,
            daemon='[daemon]\nschedule = "0 3 * * *"',
            b='schedule = "0 4 * * 1-5"',
            c='schedule = "0  4 * * 1-5"',  # the same schedule, spelled differently
        )
    )
    assert [(j.id, j.cron, j.rules) for j in found] == [
        ("sweep", "0 3 * * *", ("ci-keys",)),
        ("sweep:vendor-keys,ops-keys", "0 4 * * 1-5", ("vendor-keys", "ops-keys")),
    ]


def test_an_interval_replaces_the_daemon_cron_and_every_rule_may_have_its_own(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, daemon='[daemon]\ninterval = "2s"\njitter = "1s"')
    (job,) = jobs(cfg)
    made = trigger(job, cfg.daemon)
    assert isinstance(made, IntervalTrigger)
    assert made.interval == timedelta(seconds=2) and made.jitter == 1
    own = 'schedule = "0 1 * * *"'
    assert [j.id for j in jobs(config(tmp_path, a=own, b=own, c=own))] == [
        "sweep:ci-keys,vendor-keys,ops-keys"
    ]
    assert run_now().describe() == "now"


def test_a_scoped_sweep_keeps_the_other_rules_but_they_select_nobody(tmp_path: Path) -> None:
    cfg = config(tmp_path, c="enabled = false")
    assert scoped(cfg, None) is cfg
    narrowed = scoped(cfg, ["vendor-keys"])
    assert [(r.name, r.enabled, r.select.users) for r in narrowed.rules] == [
        ("ci-keys", True, []),
        ("vendor-keys", True, ["*"]),
        ("ops-keys", False, []),
    ]
    assert not narrowed.rules[0].selects("anyone", "/", {})
    assert narrowed.rules[1].selects("anyone", "/vendor/", {})
    assert [r.select.users for r in cfg.rules] == [["*"]] * 3, "the original is unchanged"


@pytest.mark.parametrize(
    ("daemon", "rule", "problem"),
    [
        ('[daemon]\nschedule = "0 3 * *"', "", "daemon.schedule: invalid cron expression"),
        ("", 'schedule = "0 25 * * *"', "rule 'ci-keys': schedule: invalid cron expression"),
        ('[daemon]\nschedule = "0 3 * * *"\ninterval = "5m"', "", "not both"),
        ('[daemon]\ninterval = "0s"', "", "at least 1s"),
        ('[daemon]\ntimezone = "Mars/Olympus"', "", "unknown time zone"),
        ("[daemon]\nlisten_port = 70000", "", "daemon.listen_port"),
        ('[notify]\nsns_topic_arn = "my-topic"', "", "is not an SNS topic ARN"),
        ('[notify]\nwebhook_url = "hooks.example/T0/SECRET"', "", "http(s)://"),
    ],
)
def test_daemon_and_notify_settings_are_validated_at_load(
    tmp_path: Path, daemon: str, rule: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, daemon=daemon, a=rule)
    assert any(problem in p for p in caught.value.problems), caught.value.problems
    assert "SECRET" not in str(caught.value), "a webhook URL is never repeated"


def test_the_webhook_url_is_a_secret_in_the_config(tmp_path: Path) -> None:
    cfg = config(tmp_path, daemon='[notify]\nwebhook_url = "https://hooks.example/T0/SECRET"')
    assert cfg.notify.webhook_url is not None
    assert cfg.notify.webhook_url.get_secret_value().endswith("/SECRET")
    assert "SECRET" not in repr(cfg) and "SECRET" not in str(cfg.model_dump())
