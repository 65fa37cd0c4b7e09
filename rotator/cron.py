"""Crontab expressions, read the way cron reads them, as APScheduler 3 triggers.

APScheduler 3's ``CronTrigger.from_crontab`` numbers weekdays from Monday (0 = Monday),
while cron numbers them from Sunday (0 and 7 = Sunday): ``"0 3 * * 0"`` would run on
Mondays. ``cron_trigger`` therefore translates the day-of-week field into weekday *names*
before building the trigger, so every expression means what ``crontab(5)`` says. Pure: the
policy file is validated with ``check_crontab`` before anything runs.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Annotated, Any

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator

# cron's weekday numbers: 0 (and 7) Sunday ... 6 Saturday.
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES = {name: number for number, name in enumerate(_CRON_DAYS)}


def _day(token: str, expr: str) -> int:
    """One weekday of a cron day-of-week field as cron's number (7 -> 0)."""
    value = token.strip().lower()
    if value in _NAMES:
        return _NAMES[value]
    if value.isdigit() and int(value) <= 7:
        return int(value) % 7
    raise ValueError(f"invalid day of week {token!r} in {expr!r}: use 0-7 or sun-sat")


def _days(part: str, expr: str) -> set[int]:
    """The weekdays (cron numbers) one comma-separated part selects: ``*``, ``N``,
    ``A-B``, each optionally ``/STEP``."""
    span, _, step_text = part.partition("/")
    if (step_text and not step_text.isdigit()) or step_text == "0":
        raise ValueError(f"invalid step {step_text!r} in {expr!r}")
    step = int(step_text or 1)
    if span == "*":
        first, last = 0, 6
    elif "-" in span:
        low, high = span.split("-", 1)
        first, last = _day(low, expr), _day(high, expr)
        last = 7 if high.strip() == "7" or (last == 0 and first > 0) else last
        if last < first:
            raise ValueError(f"invalid range {span!r} in {expr!r}: the start is after the end")
    else:
        first = _day(span, expr)
        last = 6 if step_text else first
    return {day % 7 for day in range(first, last + 1, step)}


def weekdays(field: str, expr: str = "") -> str:
    """A cron day-of-week field as APScheduler weekday names (``"1-5"`` -> ``"mon,tue,..."``);
    ``"*"`` stays ``"*"``."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        days |= _days(part, expr or field)
    return ",".join(_CRON_DAYS[d] for d in sorted(days, key=lambda d: (d + 6) % 7))


def cron_trigger(
    expr: str, *, timezone: tzinfo | str = "UTC", jitter: float | None = None
) -> CronTrigger:
    """The trigger for a five-field crontab expression (minute hour day month weekday).
    Raises ``ValueError`` naming the expression if it is not valid."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {expr!r}: expected 5 fields "
            '(minute hour day month weekday), e.g. "0 3 * * *"'
        )
    minute, hour, day, month, day_of_week = fields
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=weekdays(day_of_week, expr),
            timezone=timezone,
            jitter=int(jitter) if jitter else None,
        )
    except ValueError as exc:
        text = str(exc)
        raise ValueError(
            text if expr in text else f"invalid cron expression {expr!r}: {text}"
        ) from None


def check_crontab(value: Any) -> str:
    """Validator: ``value`` is a crontab expression APScheduler can run."""
    if not isinstance(value, str):
        raise ValueError(f"a cron expression must be a string, not {value!r}")
    cron_trigger(value)
    return " ".join(value.split())


CronExpr = Annotated[str, AfterValidator(check_crontab)]
