"""rotator.daemon.jobs: one job per schedule, each with its trigger, and sweeps scoped to
their rules. Pure: no scheduler runs. (What a crontab expression means: tests/test_cron.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from rotator.cron import CrontabTrigger
from rotator.daemon.jobs import jobs, run_now, scoped, trigger
from rotator.errors import ConfigError
from rotator.settings import Config, load_config

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


def test_a_cron_job_fires_as_cron_does_in_the_daemon_s_zone_with_its_jitter(
    tmp_path: Path,
) -> None:
    cfg = config(
        tmp_path,
        daemon='[daemon]\nschedule = "0 3 1 * mon"\ntimezone = "Europe/Berlin"\njitter = "30s"',
    )
    (job,) = jobs(cfg)
    made = trigger(job, cfg.daemon)
    assert isinstance(made, CrontabTrigger)
    assert (str(made.timezone), made.jitter) == ("Europe/Berlin", 30)
    monday = made.get_next_fire_time(None, datetime(2026, 1, 1, 12, tzinfo=UTC))
    assert monday is not None
    assert monday.tzinfo == made.timezone
    fired = monday.replace(second=0, microsecond=0)
    assert fired.isoformat() == "2026-01-05T03:00:00+01:00", "a Monday: DOM or DOW"
    assert monday - fired <= timedelta(seconds=30)


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
        ("", 'schedule = "0 25 * * *"', "hour 25 is out of range 0-23"),
        ("", 'schedule = "@reboot"', "@reboot is not a schedule"),
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
