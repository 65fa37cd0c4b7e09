"""Prometheus metrics of ``rotator daemon``, in a registry of their own.

Two feeds: each sweep's ``SweepResult`` (``observe_sweep``; a sweep that raised:
``observe_crash``) and the audit log's ``rotation.step`` events, read by a structlog
processor (``tap``) so step latency comes from the same ``duration_ms`` the audit log
shows, and verification time (``rotator_verification_seconds``) from its
``propagation_s``. Labels are bounded enums (kind, step, outcome, result, channel; and with
``[accounts]`` the account ID of ``rotator_account_sweeps``): never a user, a
credential ID or anything secret — but for the certificate expiry gauge (``expiry``),
which names the certificates IAM holds, as cert-manager's does.

Following Prometheus' conventions: names say what they count (``rotator_held_rotations``);
``rotator_build_info`` carries the version; every label value known in advance (the
policy's kinds, the steps and outcomes a rotation reports, the configured notification
channels) is there from the start at 0, so ``increase()`` sees the first failure; and
``render`` speaks the OpenMetrics format to a scraper that asks for it.
"""

from __future__ import annotations

import platform
from collections import Counter as Tally
from collections.abc import Iterable
from contextlib import suppress
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from structlog.typing import EventDict, Processor, WrappedLogger

import rotator
from rotator import audit
from rotator.daemon.expiry import CertificateExpiry
from rotator.model import Inventory, Kind, Outcome, Plan, Step
from rotator.rotation.org import OrgResult
from rotator.rotation.report import Report, Result, SweepResult

# Steps the driver times (``duration_ms``); plan and disable events carry no latency.
TIMED_STEPS = frozenset(
    str(s) for s in (Step.CREATE, Step.VERIFY, Step.PROMOTE, Step.DEACTIVATE, Step.DELETE)
) | {str(Step.ROLLBACK)}
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# IAM's regional propagation: peers see 3-20 s, sometimes a minute.
VERIFICATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
SWEEP_RESULTS = ("ok", "problems", "crashed")
# Results counted in ``rotator_rotations_total`` (each under its own name).
_COUNTED = frozenset(
    {
        Result.COMPLETED,
        Result.DISABLED,
        Result.FAILED,
        Result.HELD,
        Result.BLOCKED,
        Result.RETRY,
        Result.WAITING,
    }
)
ROTATION_OUTCOMES = (
    "started",
    "completed",
    "failed",
    "held",
    "blocked",
    "retry",
    "waiting",
    "disabled",
)
_ENDINGS = (Outcome.DONE, Outcome.RETRY, Outcome.FAILED)
# The (step, outcome) pairs a scheduled sweep's rotations report, preset per kind.
STEP_OUTCOMES = tuple(
    (str(step), str(outcome))
    for step in (Step.CREATE, Step.VERIFY, Step.PROMOTE, Step.DEACTIVATE, Step.DELETE, Step.DISABLE)
    for outcome in (*_ENDINGS, *((Outcome.HELD,) if step is Step.DEACTIVATE else ()))
)


def rotation_outcomes(report: Report) -> list[str]:
    """What one report adds to ``rotator_rotations_total``: ``started`` if the sweep began
    the rotation, and its result if it is one of ``completed``, ``disabled``, ``failed``,
    ``held``, ``blocked``, ``retry`` or ``waiting``."""
    found = ["started"] if report.began else []
    if report.result in _COUNTED:
        found.append(str(report.result))
    return found


def oldest_ages(inventory: Inventory, now: datetime) -> dict[Kind, float]:
    """Age in seconds of the oldest *active* credential of each kind the inventory holds."""
    ages: dict[Kind, float] = {}
    for holder in inventory.holders:
        for cred in holder.credentials:
            if cred.active:
                age = max(0.0, (now - cred.created).total_seconds())
                ages[cred.kind] = max(ages.get(cred.kind, 0.0), age)
    return ages


class Metrics:
    """The daemon's metrics; ``render`` gives the exposition. ``kinds`` and ``channels``
    (notification channel -> the results it can report) are preset at 0."""

    def __init__(
        self, kinds: Iterable[Kind] = (), channels: dict[str, tuple[str, ...]] | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.build = Info("rotator_build", "The running rotator's version.", registry=r)
        self.build.info({"version": rotator.__version__, "python": platform.python_version()})
        self.sweeps = Counter(
            "rotator_sweeps", "Sweeps by result: ok, problems, crashed.", ["result"], registry=r
        )
        self.rotations = Counter(
            "rotator_rotations",
            "Rotation outcomes per sweep, by kind: started, completed, failed, held, blocked, "
            "retry, waiting, disabled.",
            ["kind", "outcome"],
            registry=r,
        )
        self.steps = Counter(
            "rotator_steps",
            "Step outcomes (rotation.step events).",
            ["kind", "step", "outcome"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "rotator_step_duration_seconds",
            "Latency of rotation steps, retries within the sweep included.",
            ["kind", "step"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.verification_seconds = Histogram(
            "rotator_verification_seconds",
            "Time a new credential took to answer in every [verify] region, consecutive "
            "times in a row (verify steps that succeeded; the audit event's propagation_s).",
            ["kind"],
            buckets=VERIFICATION_BUCKETS,
            registry=r,
        )
        self.held = Gauge(
            "rotator_held_rotations",
            "Rotations held at the last sweep (old credential still in use).",
            ["kind"],
            registry=r,
        )
        self.blocked = Gauge(
            "rotator_blocked_credentials",
            "Credentials blocked at the last sweep (a human must act).",
            ["kind"],
            registry=r,
        )
        self.oldest = Gauge(
            "rotator_oldest_credential_age_seconds",
            "Age of the oldest active credential the last sweep saw, by kind.",
            ["kind"],
            registry=r,
        )
        self.last_success = Gauge(
            "rotator_last_successful_sweep_timestamp_seconds",
            "When the last sweep that ran to its end finished (Unix time).",
            registry=r,
        )
        self.last_duration = Gauge(
            "rotator_last_sweep_duration_seconds", "Duration of the last sweep.", registry=r
        )
        self.in_progress = Gauge(
            "rotator_sweeps_in_progress", "Sweeps running now (0 or 1).", registry=r
        )
        self.notifications = Counter(
            "rotator_notifications",
            "Notifications by channel and result.",
            ["channel", "result"],
            registry=r,
        )
        self.account_sweeps = Counter(
            "rotator_account_sweeps",
            "With [accounts]: each account's sweeps by result: ok, problems, failed (the "
            "account could not be swept: no role, AccessDenied ...).",
            ["account", "result"],
            registry=r,
        )
        self.reloads = Counter(
            "rotator_policy_reloads", "Policy reloads (SIGHUP) by result.", ["result"], registry=r
        )
        self.expiry = CertificateExpiry()
        r.register(self.expiry)
        for result in SWEEP_RESULTS:
            self.sweeps.labels(result)
        for result in ("ok", "failed"):
            self.reloads.labels(result)
        self.preset(kinds, channels or {})

    def preset(self, kinds: Iterable[Kind], channels: dict[str, tuple[str, ...]]) -> None:
        """Create every series these kinds and channels can have, at 0 (a series that
        exists already keeps its value). Called again when a reload adds some."""
        for kind in map(str, kinds):
            for outcome in ROTATION_OUTCOMES:
                self.rotations.labels(kind, outcome)
            for step, outcome in STEP_OUTCOMES:
                self.steps.labels(kind, step, outcome)
            for step in sorted(TIMED_STEPS - {str(Step.ROLLBACK)}):
                self.step_seconds.labels(kind, step)
            self.verification_seconds.labels(kind)
            if kind not in _known(self.held):
                self.held.labels(kind).set(0)
                self.blocked.labels(kind).set(0)
        for channel, results in channels.items():
            for result in results:
                self.notifications.labels(channel, result)

    # -- feeds ----------------------------------------------------------------------------

    def observe_sweep(
        self, result: SweepResult, inventory: Inventory | None = None, *, ok: bool | None = None
    ) -> None:
        """Count what one finished sweep did; set the per-kind gauges from it. ``ok``
        overrides ``result.ok`` (a sweep over many accounts)."""
        self.sweeps.labels("ok" if (result.ok if ok is None else ok) else "problems").inc()
        held: Tally[str] = Tally()
        blocked: Tally[str] = Tally()
        for report in result.reports:
            kind = str(report.decision.kind)
            for outcome in rotation_outcomes(report):
                self.rotations.labels(kind, outcome).inc()
            held[kind] += report.result is Result.HELD
            blocked[kind] += report.result is Result.BLOCKED
        for kind in {str(r.decision.kind) for r in result.reports} | _known(self.held):
            self.held.labels(kind).set(held[kind])
            self.blocked.labels(kind).set(blocked[kind])
        if inventory is not None:
            for found, age in oldest_ages(inventory, result.finished_at).items():
                self.oldest.labels(str(found)).set(age)
        self.last_success.set(result.finished_at.timestamp())
        self.last_duration.set((result.finished_at - result.started_at).total_seconds())

    def observe_org(self, result: OrgResult) -> None:
        """Count one sweep over many accounts: per account (``rotator_account_sweeps``),
        and every account's decisions together as one sweep."""
        for one in result.accounts:
            outcome = "failed" if one.error is not None else ("ok" if one.ok else "problems")
            self.account_sweeps.labels(one.account.id, outcome).inc()
        merged = SweepResult(
            run_id=result.run_id,
            account="*",
            dry_run=result.dry_run,
            started_at=result.started_at,
            finished_at=result.finished_at,
            plan=Plan(decisions=()),
            reports=tuple(r for a in result.accounts if a.sweep for r in a.sweep.reports),
        )
        self.observe_sweep(merged, ok=result.ok)  # an account that failed is a problem

    def observe_crash(self) -> None:
        """A sweep raised before it could report (AWS or the journal unreachable ...)."""
        self.sweeps.labels("crashed").inc()

    def observe_step(self, event: EventDict) -> None:
        """Count one ``rotation.step`` event and its latency."""
        kind, step = str(event.get("kind", "")), str(event.get("step", ""))
        self.steps.labels(kind, step, str(event.get("outcome", ""))).inc()
        duration = event.get("duration_ms")
        if step in TIMED_STEPS and isinstance(duration, int | float):
            self.step_seconds.labels(kind, step).observe(duration / 1000)
        propagation = event.get("propagation_s")
        if step == str(Step.VERIFY) and isinstance(propagation, int | float):
            self.verification_seconds.labels(kind).observe(propagation)

    def tap(self) -> Processor:
        """A structlog processor feeding ``observe_step``; it never changes or drops an
        event, and a metrics error never breaks logging."""

        def processor(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
            if event_dict.get("event") == audit.ROTATION_STEP:
                with suppress(Exception):  # metrics must never stop the audit log
                    self.observe_step(event_dict)
            return event_dict

        return processor

    def install_tap(self) -> None:
        """Put ``tap`` first in the current structlog configuration (call it after the
        audit log is configured). Events below ``[audit] level`` never reach it."""
        processors: list[Any] = list(structlog.get_config()["processors"])
        structlog.configure(processors=[self.tap(), *processors])

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition and its content type, in the format the ``Accept`` header asks
        for: OpenMetrics for ``application/openmetrics-text``, else Prometheus' text."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


def _known(gauge: Gauge) -> set[str]:
    """The label values a one-label gauge has been set for."""
    return {
        sample.labels["kind"]
        for metric in gauge.collect()
        for sample in metric.samples
        if "kind" in sample.labels
    }
