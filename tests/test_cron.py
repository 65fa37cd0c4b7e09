"""rotator.cron: crontab expressions mean what crontab(5) says — checked against cronsim
(the library that decides fire times, which follows Debian's cron) and, for the cases the
issue names, against dates worked out by hand. Pure: no scheduler runs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from rotator.cron import CronError, CrontabTrigger, check_crontab, cron_trigger, parse

THURSDAY = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)  # 2026-01-01 is a Thursday
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ours(trigger: CrontabTrigger, start: datetime, count: int) -> list[datetime]:
    """The trigger's fire times from ``start``, as the scheduler asks for them: each run
    asks for the next with the time it fired as both the previous fire time and now."""
    fired: list[datetime] = []
    previous: datetime | None = None
    now = start
    for _ in range(count):
        found = trigger.get_next_fire_time(previous, now)
        assert found is not None
        fired.append(found)
        previous = now = found
    return fired


def library(expr: str, start: datetime, zone: ZoneInfo | None, count: int) -> list[datetime]:
    """cronsim's fire times for ``expr`` from ``start`` (in ``zone``; None: UTC)."""
    local = start.astimezone(zone) if zone is not None else start
    return list(islice(CronSim(expr, local), count))


# (our expression, the same in cronsim's words, time zone). cronsim takes no nicknames:
# crontab(5) defines each as the five fields beside it.
TABLE = [
    ("0 3 * * *", "0 3 * * *", None),
    ("0 3 * * 0", "0 3 * * 0", None),  # 0 = Sunday
    ("0 3 * * 7", "0 3 * * 7", None),  # 7 = Sunday too
    ("0 3 * * sun", "0 3 * * 0", None),
    ("30 13 * * 1-5", "30 13 * * 1-5", None),
    ("0 9 * * MON-FRI", "0 9 * * 1-5", None),
    ("0 0 * * sat-sun", "0 0 * * 6-7", None),
    ("0 0 * * 5-0", "0 0 * * 5-7", None),  # Friday to Sunday
    ("0 0 * * */2", "0 0 * * */2", None),  # Sun, Tue, Thu, Sat
    ("*/15 * * * *", "*/15 * * * *", None),
    ("5-55/10 */6 * * *", "5-55/10 */6 * * *", None),
    ("0 6 1 * *", "0 6 1 * *", None),
    ("0 3 1 * 1", "0 3 1 * 1", None),  # the 1st OR any Monday
    ("0 3 1,15 * fri", "0 3 1,15 * 5", None),  # the 1st, the 15th OR any Friday
    ("0 0 31 2 mon", "0 0 31 2 1", None),  # no 31 February, but every Monday in February
    ("0 3 */2 * 1", "0 3 */2 * 1", None),  # a field starting with * : AND (Debian)
    ("0 0 * jan,jul *", "0 0 * 1,7 *", None),
    ("0 0 1 JAN-MAR *", "0 0 1 1-3 *", None),
    ("0 0 29 2 *", "0 0 29 2 *", None),  # leap days only
    ("@daily", "0 0 * * *", None),
    ("@midnight", "0 0 * * *", None),
    ("@hourly", "0 * * * *", None),
    ("@weekly", "0 0 * * 0", None),
    ("@monthly", "0 0 1 * *", None),
    ("@yearly", "0 0 1 1 *", None),
    ("@annually", "0 0 1 1 *", None),
    ("0 3 * * *", "0 3 * * *", NEW_YORK),
    ("30 2 * * *", "30 2 * * *", BERLIN),  # crosses both daylight-saving changes
    ("*/20 1-3 * * *", "*/20 1-3 * * *", BERLIN),
    ("0 3 1 * 1", "0 3 1 * 1", BERLIN),
]


@pytest.mark.parametrize(("expr", "theirs", "zone"), TABLE)
def test_fire_times_are_the_library_s(expr: str, theirs: str, zone: ZoneInfo | None) -> None:
    trigger = cron_trigger(expr, timezone=zone or "UTC")
    # From the start of the year, and from the days before both daylight-saving changes
    # (never from a fire time itself: the scheduler's first ask includes it, cronsim not).
    for start in (THURSDAY, THURSDAY.replace(month=3, day=27), THURSDAY.replace(month=10, day=23)):
        count = 12 if expr != "0 0 29 2 *" else 2
        assert ours(trigger, start, count) == library(theirs, start, zone, count), start


@pytest.mark.parametrize(
    ("expr", "zone", "expected"),
    [
        # The case: the 1st of the month OR a Monday (APScheduler alone: only
        # Mondays that are the 1st, next in June 2026).
        (
            "0 3 1 * 1",
            UTC,
            ["2026-01-05T03:00+00:00", "2026-01-12T03:00+00:00", "2026-01-19T03:00+00:00"],
        ),
        ("@daily", UTC, ["2026-01-02T00:00+00:00", "2026-01-03T00:00+00:00"]),
        ("@weekly", UTC, ["2026-01-04T00:00+00:00", "2026-01-11T00:00+00:00"]),
        ("@monthly", UTC, ["2026-02-01T00:00+00:00", "2026-03-01T00:00+00:00"]),
        ("0 3 * * 0", UTC, ["2026-01-04T03:00+00:00"]),  # Sunday, not Monday
        ("0 0 * * 5-0", UTC, ["2026-01-02T00:00+00:00", "2026-01-03T00:00+00:00"]),
        ("0 3 * * *", NEW_YORK, ["2026-01-02T03:00-05:00"]),
    ],
)
def test_fire_times_worked_out_by_hand(expr: str, zone: ZoneInfo, expected: list[str]) -> None:
    fired = ours(cron_trigger(expr, timezone=zone), THURSDAY, len(expected))
    assert [f.isoformat(timespec="minutes") for f in fired] == expected


def test_the_first_of_february_and_the_mondays_between_all_fire() -> None:
    """DOM/DOW OR over a month boundary: Mondays 26 Jan, 2 Feb and the 1st between."""
    start = datetime(2026, 1, 20, tzinfo=UTC)
    fired = ours(cron_trigger("0 3 1 * 1"), start, 3)
    assert [f.date().isoformat() for f in fired] == ["2026-01-26", "2026-02-01", "2026-02-02"]


def test_daylight_saving_changes_fire_as_cron_does() -> None:
    """Berlin: 02:30 does not exist on 29 March (cron runs it at 03:00) and happens twice
    on 25 October (cron runs it once)."""
    trigger = cron_trigger("30 2 * * *", timezone="Europe/Berlin")
    spring = ours(trigger, datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert [f.isoformat() for f in spring] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    autumn = ours(trigger, datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert [f.astimezone(UTC).isoformat() for f in autumn] == [
        "2026-10-25T00:30:00+00:00",  # 02:30 CEST, the first of the two
        "2026-10-26T01:30:00+00:00",  # 02:30 CET the next day
    ]
    # A daemon started during the repeated hour, after the first 02:30 passed, does not
    # run it again (and never returns a time behind it).
    second_hour = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET, the second 02:10
    assert trigger.get_next_fire_time(None, second_hour) == datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )


def test_a_start_on_a_fire_time_fires_at_once_and_the_next_is_strictly_later() -> None:
    trigger = cron_trigger("0 3 * * *")
    at_three = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, at_three) == at_three
    later = at_three + timedelta(microseconds=1)
    assert trigger.get_next_fire_time(None, later) == at_three + timedelta(days=1)
    assert trigger.get_next_fire_time(at_three, at_three) == at_three + timedelta(days=1)


def test_jitter_delays_each_fire_time_by_at_most_the_jitter() -> None:
    random.seed(3)
    trigger = cron_trigger("0 3 * * *", timezone="America/New_York", jitter=60)
    base = datetime(2026, 1, 2, 3, 0, tzinfo=NEW_YORK)
    delays = set()
    previous = None
    for day in range(20):
        fired = trigger.get_next_fire_time(previous, THURSDAY if previous is None else previous)
        assert fired is not None
        delay = fired - (base + timedelta(days=day))
        assert timedelta(0) <= delay <= timedelta(seconds=60)
        delays.add(delay)
        previous = fired  # a jittered run: the next is the next day's, not a second one
    assert len(delays) > 1, "the delay is random"


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("* * *", "expected 5 fields (minute hour day-of-month month day-of-week) or a"),
        ("0 0 0 * * *", "got 6"),  # no seconds field: cron has none
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("x * * * *", "minute 'x' is not a number 0-59"),
        ("0 0 * foo *", "month 'foo' is not a number 1-12 or a name jan-dec"),
        ("0 0 * * monday", "day of week 'monday' is not a number 0-7 or a name sun-sat"),
        ("0 0 * * 5-2", "day of week range '5-2': the start is after the end"),
        ("0 0 * * */0", "invalid step '0' in day of week '*/0': use a number from 1"),
        ("*/x * * * *", "invalid step 'x' in minute '*/x'"),
        ("5/15 * * * *", "minute '5/15': a step follows * or a range, e.g. 5-59/15"),
        ("0 0 1,,2 * *", "day of month '' is not a number 1-31"),
        ("0 0 L * *", "day of month 'L' is not a number 1-31"),  # cronsim's, not cron's
        ("0 0 * * MON#1", "day of week 'MON#1' is not a number"),
        ("0 0 30 2 *", "it never fires: no month has that day"),
        ("@reboot", "@reboot is not a schedule"),
        ("@often", "unknown nickname: use one of @yearly, @annually, @monthly, @weekly"),
    ],
)
def test_what_cron_refuses_is_refused_in_one_line_naming_the_field(expr: str, problem: str) -> None:
    with pytest.raises(CronError) as caught:
        cron_trigger(expr)
    message = str(caught.value)
    assert message.startswith(f"invalid cron expression {expr!r}: ")
    assert problem in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="invalid cron expression"):
        check_crontab(expr)


@pytest.mark.parametrize(
    ("expr", "canonical"),
    [
        ("0 3 * * mon-fri", "0 3 * * 1-5"),
        ("0  3 *  *  SUN", "0 3 * * 0"),
        ("0 0 1 jan,Jul *", "0 0 1 1,7 *"),
        ("0 0 * * fri-sun", "0 0 * * 5-7"),
        ("0 0 * * 1-5/2", "0 0 * * 1-5/2"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_names_and_nicknames_are_read_as_numbers(expr: str, canonical: str) -> None:
    assert parse(expr) == canonical


def test_the_policy_keeps_the_expression_as_written_whitespace_aside() -> None:
    assert check_crontab(" 0  3 * *   mon ") == "0 3 * * mon"
    assert check_crontab("@daily") == "@daily"
    with pytest.raises(ValueError, match="must be a string"):
        check_crontab(3)
    assert str(cron_trigger("@daily")) == "cron[@daily]"
