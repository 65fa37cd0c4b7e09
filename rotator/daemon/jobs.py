"""What ``rotator daemon`` schedules: one job per distinct schedule. Pure.

Rules with their own ``schedule`` are grouped by it, one job per cron expression; every
other rule is swept by the ``[daemon]`` job (its ``schedule``, default hourly, or its
``interval``). A job's sweep *starts* rotations only for its own rules: ``scoped`` makes
the others select nobody for that sweep, so none starts, while every rotation in flight
still advances when due.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from rotator.cron import cron_trigger
from rotator.policy import Rule
from rotator.settings import Config, DaemonSettings

RUN_NOW = "run-now"


@dataclass(frozen=True, kw_only=True)
class Job:
    """One scheduled sweep: a cron expression or an interval, and the rules it starts
    rotations for (``None``: every rule)."""

    id: str
    cron: str | None = None
    interval: timedelta | None = None
    rules: tuple[str, ...] | None = None

    def describe(self) -> str:
        """``"cron 0 3 * * *"`` / ``"every 0:00:02"`` / ``"now"``, for the audit log."""
        if self.cron is not None:
            return f"cron {self.cron}"
        if self.interval is not None:
            return f"every {self.interval}"
        return "now"


def jobs(config: Config) -> list[Job]:
    """The jobs for ``config``: the ``[daemon]`` job for rules without a schedule (if any),
    then one per distinct rule schedule, in the policy's order."""
    settings = config.daemon
    own: dict[str, list[str]] = {}
    default: list[str] = []
    for rule in config.rules:
        if rule.schedule is None:
            default.append(rule.name)
        else:
            own.setdefault(rule.schedule, []).append(rule.name)
    found: list[Job] = []
    if default:
        everything = None if not own else tuple(default)
        if settings.interval is not None:
            found.append(Job(id="sweep", interval=settings.interval, rules=everything))
        else:
            found.append(Job(id="sweep", cron=settings.default_schedule, rules=everything))
    for cron, names in own.items():
        found.append(Job(id=f"sweep:{','.join(names)}", cron=cron, rules=tuple(names)))
    return found


def run_now() -> Job:
    """A one-off sweep of every rule, at once (``rotator daemon --run-now``)."""
    return Job(id=RUN_NOW)


def trigger(job: Job, settings: DaemonSettings) -> BaseTrigger:
    """The APScheduler trigger for ``job`` (jitter from ``[daemon] jitter``)."""
    jitter = int(settings.jitter.total_seconds()) or None
    if job.cron is not None:
        return cron_trigger(job.cron, timezone=settings.timezone, jitter=jitter)
    if job.interval is not None:
        return IntervalTrigger(
            seconds=int(job.interval.total_seconds()), jitter=jitter, timezone=settings.timezone
        )
    return DateTrigger(timezone=settings.timezone)  # now


def scoped(config: Config, rules: Collection[str] | None) -> Config:
    """``config`` for a sweep that starts rotations only for ``rules`` (``None``: all).

    Every other rule is kept but selects nobody for that sweep: no user is listed or
    planned for it, yet the planner still knows the rule, so its rotations in flight
    advance (a *disabled* rule would make them look orphaned)."""
    if rules is None:
        return config
    wanted = set(rules)
    return config.model_copy(
        update={"rules": [r if r.name in wanted else _selects_nobody(r) for r in config.rules]}
    )


def _selects_nobody(rule: Rule) -> Rule:
    nobody: dict[str, list[str]] = {"users": []}
    if rule.select.names is not None:
        nobody["names"] = []
    return rule.model_copy(update={"select": rule.select.model_copy(update=nobody)})
