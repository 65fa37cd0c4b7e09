"""Crontab expressions as ``crontab(5)`` reads them, and the APScheduler 3 trigger that
fires on them.

*What is accepted* is ``crontab(5)``'s grammar, checked here so that a mistake gets a
one-line reason naming the field: five fields (minute, hour, day of month, month, day of
week), each a comma-separated list of ``*``, a number, a name (``jan``-``dec``,
``sun``-``sat``, any case) or a range ``A-B``, a ``*`` or a range optionally followed by
``/STEP``; weekday ``0`` and ``7`` are Sunday; and the nicknames ``@yearly``,
``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``.
(cronsim's extensions — seconds, ``L``, ``W``, ``#`` — are refused: cron would refuse them.)

*When it fires* is cronsim's answer: cronsim follows Debian's cron, so when both the day of
month and the day of week are restricted (neither starts with ``*``) a day matching
*either* fires — ``"0 3 1 * 1"`` runs on the 1st and on every Monday — and daylight-saving
changes are handled as cron handles them. APScheduler 3's own ``CronTrigger`` ANDs the two
day fields and numbers weekdays from Monday, so the daemon uses ``CrontabTrigger`` instead.
``parse`` and ``next_fire`` are pure; the trigger is a thin shell over them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from cronsim import CronSim, CronSimError
from pydantic import AfterValidator

# crontab(5): "@yearly" and the rest are these five fields exactly.
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NUMBER = re.compile(r"[0-9]+")
_SKIP_LIMIT = 1000  # fire times a daylight-saving fold can put behind us (a few at most)


class CronError(ValueError):
    """An expression cron would not accept; the message is one line and names it."""

    def __init__(self, expr: str, problem: str) -> None:
        super().__init__(f"invalid cron expression {expr!r}: {problem}")
        self.expr = expr
        self.problem = problem


@dataclass(frozen=True)
class _Field:
    """One of the five fields: its name, its range and the names it accepts."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first: int = 0  # the number of names[0]

    def value(self, token: str) -> int:
        """The number ``token`` stands for; raises ``ValueError`` saying why not."""
        lowered = token.lower()
        if lowered in self.names:
            return self.names.index(lowered) + self.first
        if not _NUMBER.fullmatch(token):
            named = f" or a name {self.names[0]}-{self.names[-1]}" if self.names else ""
            raise ValueError(f"{self.name} {token!r} is not a number {self.span}{named}")
        number = int(token)
        if not self.low <= number <= self.high:
            raise ValueError(f"{self.name} {number} is out of range {self.span}")
        return number

    @property
    def span(self) -> str:
        return f"{self.low}-{self.high}"

    def canonical(self, text: str) -> str:
        """``text`` (one field) checked and spelled in numbers: ``"mon-fri"`` -> ``"1-5"``.
        Raises ``ValueError`` naming the part that is wrong."""
        return ",".join(self._part(part) for part in text.split(","))

    def _part(self, part: str) -> str:
        span, slash, step = part.partition("/")
        if slash and not (_NUMBER.fullmatch(step) and int(step) >= 1):
            raise ValueError(f"invalid step {step!r} in {self.name} {part!r}: use a number from 1")
        if span == "*":
            return part
        low_text, dash, high_text = span.partition("-")
        low = self.value(low_text)
        if not dash:
            if slash:
                raise ValueError(
                    f"{self.name} {part!r}: a step follows * or a range, "
                    f"e.g. {low}-{self.high}/{step}"
                )
            return str(low)
        high = self.value(high_text)
        if self.names is _DAYS and high == 0 and low > 0:
            high = 7  # "fri-sun", "5-0": Friday to Sunday
        if high < low:
            raise ValueError(f"{self.name} range {span!r}: the start is after the end")
        return f"{low}-{high}" + (f"/{step}" if slash else "")


FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _DAYS, 0),
)
_NICKNAME_LIST = ", ".join(NICKNAMES)


def parse(expr: str) -> str:
    """The five numeric fields cronsim reads for ``expr`` (a crontab line or a nickname).
    Raises ``CronError`` with a one-line reason if cron would not accept it, or if it
    could never fire (``"0 0 30 2 *"``: there is no 30 February)."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() == "@reboot":
            raise CronError(expr, "@reboot is not a schedule (--run-now sweeps at start)")
        if text.lower() not in NICKNAMES:
            raise CronError(expr, f"unknown nickname: use one of {_NICKNAME_LIST}")
        text = NICKNAMES[text.lower()]
    fields = text.split()
    if len(fields) != len(FIELDS):
        raise CronError(
            expr,
            f"expected 5 fields (minute hour day-of-month month day-of-week) or a "
            f'nickname such as @daily, got {len(fields)}; e.g. "0 3 * * *"',
        )
    try:
        canonical = " ".join(f.canonical(t) for f, t in zip(FIELDS, fields, strict=True))
    except ValueError as exc:
        raise CronError(expr, str(exc)) from None
    try:
        CronSim(canonical, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:  # the day of month exists in none of the months
        raise CronError(expr, "it never fires: no month has that day") from None
    return canonical


def next_fire(
    fields: str, after: datetime, zone: tzinfo, *, inclusive: bool = False
) -> datetime | None:
    """The first time ``fields`` (from ``parse``) fires after ``after`` (or at it, if
    ``inclusive``), read in ``zone``; ``None`` if it never fires again. Pure."""
    local = after.astimezone(zone)
    # cronsim drops microseconds and steps one second before it looks: start a second
    # early to include ``after`` itself.
    start = local - timedelta(seconds=1) if inclusive and local.microsecond == 0 else local
    times = CronSim(fields, start)
    for _ in range(_SKIP_LIMIT):
        try:
            found = next(times)
        except StopIteration:
            return None
        # In a repeated (fall-back) hour cron reads wall time: skip what is behind us.
        if found > after or (inclusive and found == after):
            return found
    return None


def zone(name: str | tzinfo) -> tzinfo:
    """A time zone from an IANA name (``"UTC"`` is the fixed UTC zone)."""
    if isinstance(name, tzinfo):
        return name
    return UTC if name == "UTC" else ZoneInfo(name)


class CrontabTrigger(BaseTrigger):  # type: ignore[misc]  # apscheduler is untyped
    """An APScheduler 3 trigger firing when a crontab expression does, as cron reads it,
    in ``timezone``; each fire time is delayed by up to ``jitter`` seconds at random."""

    __slots__ = ("expr", "fields", "jitter", "timezone")

    def __init__(
        self, expr: str, *, timezone: str | tzinfo = "UTC", jitter: float | None = None
    ) -> None:
        self.expr = " ".join(expr.split())
        self.fields = parse(expr)
        self.timezone = zone(timezone)
        self.jitter = jitter or None

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            fire = next_fire(self.fields, now, self.timezone, inclusive=True)
        else:  # strictly after the last run (or after now, if the clock went back)
            fire = next_fire(self.fields, min(previous_fire_time, now), self.timezone)
        jittered: datetime | None = self._apply_jitter(fire, self.jitter, now)
        return jittered

    def __str__(self) -> str:
        return f"cron[{self.expr}]"

    def __repr__(self) -> str:
        zone_name = str(self.timezone)
        return f"<CrontabTrigger ({self.expr!r}, timezone={zone_name}, jitter={self.jitter})>"


def cron_trigger(
    expr: str, *, timezone: str | tzinfo = "UTC", jitter: float | None = None
) -> CrontabTrigger:
    """The trigger for a crontab expression. Raises ``CronError`` if it is not valid."""
    return CrontabTrigger(expr, timezone=timezone, jitter=jitter)


def check_crontab(value: Any) -> str:
    """Validator: ``value`` is a crontab expression cron accepts (whitespace normalised)."""
    if not isinstance(value, str):
        raise ValueError(f"a cron expression must be a string, not {value!r}")
    parse(value)
    return " ".join(value.split())


CronExpr = Annotated[str, AfterValidator(check_crontab)]


def longest_gap(
    expr: str, *, samples: int = 1000, span: timedelta = timedelta(days=800)
) -> timedelta:
    """The longest wait between two consecutive fires of ``expr`` (UTC, from 2000-01-01,
    over ``samples`` fires or ``span``, whichever ends first): how long a rotation that just
    became due may wait for a sweep. Pure."""
    fields = parse(expr)
    start = datetime(2000, 1, 1, tzinfo=UTC)
    times = CronSim(fields, start)
    longest, previous = timedelta(0), start
    for _ in range(samples):
        try:
            fired = next(times)
        except StopIteration:
            break
        if fired != previous:
            longest = max(longest, fired - previous)
        previous = fired
        if fired - start > span:
            break
    return longest
