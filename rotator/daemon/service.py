"""``rotator daemon`` at run time: scheduled sweeps, health, metrics, notifications,
reload on SIGHUP and a clean drain on SIGTERM/SIGINT.

APScheduler 3's ``AsyncIOScheduler`` fires one job per schedule (``rotator.daemon.jobs``),
each with ``coalesce``, ``max_instances=1``, jitter and a misfire grace time. A job does not
run the sweep itself: it starts a task of ours and awaits it shielded, because APScheduler's
``shutdown`` cancels running coroutines even with ``wait=True``. Sweeps are serialised (one
at a time per daemon; the journal's leases already make concurrent sweeps safe, but one at
a time keeps the metrics and the notifications whole).

Draining: the first SIGTERM/SIGINT pauses the scheduler (no new sweep starts), waits for
the sweep in flight to finish every step it started (at most ``[daemon] drain_timeout``),
shuts the scheduler down and exits 0. A second signal, or the timeout, cancels the sweep
(the protocol is crash-safe: the next sweep resumes it) and the exit code is 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING

from rotator import app as application
from rotator import audit, redaction
from rotator.daemon import http as health
from rotator.daemon.jobs import RUN_NOW, Job, jobs, run_now, scoped, trigger
from rotator.daemon.metrics import Metrics
from rotator.daemon.notify import NOTIFY_FAILED, Notifier, channel_results, describe
from rotator.daemon.systemd import READY, STOPPING, Systemd
from rotator.errors import ConfigError, RotatorError
from rotator.model import Inventory
from rotator.rotation.org import OrgSweep
from rotator.rotation.report import SweepResult
from rotator.settings import Config

DAEMON_STARTED = "daemon.started"
DAEMON_STOPPING = "daemon.stopping"
DAEMON_STOPPED = "daemon.stopped"
DAEMON_RELOADED = "daemon.reloaded"
DAEMON_RELOAD_FAILED = "daemon.reload_failed"
DAEMON_LISTEN_FAILED = "daemon.listen_failed"
DRAIN_TIMEOUT = "daemon.drain_timeout"
SWEEP_CRASHED = "daemon.sweep_crashed"
SWEEP_MISSED = "daemon.sweep_missed"
_STATES = {STATE_RUNNING: "running", STATE_PAUSED: "paused"}


class Daemon:
    """One daemon process: build it from a validated config, then ``await run()``."""

    def __init__(
        self, config: Config, *, path: Path, run_now: bool = False, systemd: Systemd | None = None
    ) -> None:
        self.config = config
        self.path = path
        self.run_now = run_now
        self.systemd = systemd or Systemd()
        self.metrics = Metrics(
            kinds={r.kind for r in config.rules}, channels=channel_results(config.notify)
        )
        self.notifier = Notifier(config.notify, application.make_aws(config))
        self._scheduler = AsyncIOScheduler(timezone=config.daemon.timezone)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._signals = 0
        self._draining = False
        self._crashed: str | None = None
        self._last: dict[str, Any] | None = None
        self._listen = ""  # host:port once listening
        self._log = audit.get_logger()

    # -- health ---------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the scheduler runs and the last sweep did not crash."""
        state = _STATES.get(self._scheduler.state, "stopped")
        details: dict[str, Any] = {
            "scheduler": state,
            "sweeping": any(not t.done() for t in self._tasks),
            "last_sweep": self._last,
        }
        if self._crashed is not None:
            details["reason"] = f"the last sweep crashed: {self._crashed}"
        elif state != "running":
            details["reason"] = f"the scheduler is {state}"
        return state == "running" and self._crashed is None, details

    # -- life cycle -----------------------------------------------------------------------

    async def run(self) -> int:
        """Serve and sweep until SIGTERM/SIGINT, then drain. Returns the exit code."""
        settings = self.config.daemon
        try:
            server = await health.serve(
                settings.listen_host,
                settings.listen_port,
                health=self.health,
                metrics=self.metrics.render,
            )
        except OSError as exc:
            listen = f"{settings.listen_host}:{settings.listen_port}"
            self._log.error(DAEMON_LISTEN_FAILED, listen=listen, reason=str(exc))
            return 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload)
        watchdog = asyncio.create_task(self.systemd.keep_alive(self._alive), name="watchdog")
        try:
            self._start_scheduler()
            self._listen = "{}:{}".format(*server.address)
            self._log.info(DAEMON_STARTED, listen=self._listen, jobs=self._jobs())
            self.systemd.notify(READY, f"STATUS={self._status()}")
            await self._stop.wait()
            clean = await self._drain()
        finally:
            watchdog.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await server.close()
        self._log.info(DAEMON_STOPPED, clean=clean)
        return 0 if clean else 1

    def _alive(self) -> bool:
        """For the watchdog: the loop turns (this runs) and the scheduler works."""
        return self._draining or self._scheduler.state == STATE_RUNNING

    def _status(self) -> str:
        """systemd's one-line STATUS=."""
        jobs = len(self._scheduler.get_jobs())
        return f"serving {self._listen}; {jobs} scheduled sweep{'s' * (jobs != 1)}"

    def _start_scheduler(self) -> None:
        # APScheduler logs through the logging module; the audit log reports what matters.
        quiet = logging.getLogger("apscheduler")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        self._scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self._scheduler.start()
        self._schedule(self.config)
        if self.run_now:
            self._add(run_now(), self.config)

    def _schedule(self, config: Config) -> None:
        """Replace the scheduled jobs with ``config``'s."""
        for job in self._scheduler.get_jobs():
            if job.id != RUN_NOW:
                job.remove()
        for job in jobs(config):
            self._add(job, config)

    def _add(self, job: Job, config: Config) -> None:
        self._scheduler.add_job(
            self._fire,
            trigger(job, config.daemon),
            args=[job],
            id=job.id,
            name=job.describe(),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(config.daemon.misfire_grace_time.total_seconds()),
            replace_existing=True,
        )

    def _jobs(self) -> list[dict[str, Any]]:
        return [
            {"id": j.id, "schedule": j.name, "next_run": _iso(j.next_run_time)}
            for j in self._scheduler.get_jobs()
        ]

    # -- sweeps ---------------------------------------------------------------------------

    async def _fire(self, job: Job) -> None:
        """The APScheduler job: start the sweep as our own task and wait for it (shielded
        from APScheduler's cancellation)."""
        if self._draining:
            return
        task = asyncio.create_task(self._sweep(job), name=f"sweep {job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    async def _sweep(self, job: Job) -> None:
        async with self._lock:
            if self._draining:
                return
            self.metrics.in_progress.set(1)
            config = self.config  # a reload during the sweep applies to the next one
            try:
                async with application.open_engine(scoped(config, job.rules)) as engine:
                    if engine.org is not None:
                        await self._org_sweep(job, engine.org, config)
                        return
                    result = await engine.sweep()
            except Exception as exc:  # the sweep itself failed: AWS or the journal down
                self._crashed = describe(exc)
                self.metrics.observe_crash()
                self._last = {"job": job.id, "crashed": True, "reason": self._crashed}
                # Our own errors say what failed; anything else is a bug: keep its traceback.
                unexpected = not isinstance(exc, RotatorError)
                self._log.error(
                    SWEEP_CRASHED, job=job.id, reason=self._crashed, exc_info=unexpected
                )
                return
            finally:
                self.metrics.in_progress.set(0)
            self._crashed = None
            self._finished(job, result, config)
            for delivery in await self.notifier.sweep_finished(result):
                outcome = "sent" if delivery.ok else "failed"
                self.metrics.notifications.labels(delivery.channel, outcome).inc()

    async def _org_sweep(self, job: Job, org: OrgSweep, config: Config) -> None:
        """With ``[accounts]``: one sweep of every account; metrics per account
        (``rotator_account_sweeps``) and over all; one notification per account's sweep,
        its owners' tags read in that account (through its member role)."""
        result = await org.run()
        self._crashed = None
        self.metrics.observe_org(result)
        self._last = {
            "job": job.id,
            "run_id": result.run_id,
            "finished_at": result.finished_at.isoformat(),
            "ok": result.ok,
            "counts": result.counts(),
            "accounts_failed": [a.account.id for a in result.accounts if a.error is not None],
        }
        for one in result.accounts:
            if one.sweep is None:
                continue
            owners_in = None
            if config.notify.enabled and config.notify.owner_tag:
                try:
                    owners_in = await org.aws_for(one.account)
                except RotatorError as exc:  # the sweep got in a moment ago: rare
                    self._log.warning(
                        NOTIFY_FAILED,
                        channel="owner-tags",
                        account=one.account.id,
                        reason=describe(exc),
                    )
                    self.metrics.notifications.labels("owner-tags", "failed").inc()
            for delivery in await self.notifier.sweep_finished(
                one.sweep,
                owners=owners_in is not None or not config.notify.owner_tag,
                owners_in=owners_in,
            ):
                outcome = "sent" if delivery.ok else "failed"
                self.metrics.notifications.labels(delivery.channel, outcome).inc()

    def _finished(self, job: Job, result: SweepResult, config: Config) -> None:
        # SweepResult.inventory: oldest credential age, certificate expiry.
        inventory = result.inventory
        self.metrics.observe_sweep(result, inventory if isinstance(inventory, Inventory) else None)
        if isinstance(inventory, Inventory):
            swept = [r for r in config.rules if job.rules is None or r.name in job.rules]
            self.metrics.expiry.observe(inventory, swept)
        self._last = {
            "job": job.id,
            "run_id": result.run_id,
            "finished_at": result.finished_at.isoformat(),
            "ok": result.ok,
            "counts": result.counts(),
        }

    def _on_missed(self, event: JobExecutionEvent) -> None:
        self._log.warning(
            SWEEP_MISSED,
            job=event.job_id,
            scheduled=_iso(event.scheduled_run_time),
            reason="missed by more than misfire_grace_time",
        )

    # -- signals --------------------------------------------------------------------------

    def _on_stop(self, sig: signal.Signals) -> None:
        self._signals += 1
        in_flight = sum(not t.done() for t in self._tasks)
        if self._signals == 1:
            self._log.info(DAEMON_STOPPING, signal=sig.name, sweeps_in_flight=in_flight)
            self.systemd.notify(STOPPING, f"STATUS=draining {in_flight} sweep(s)")
            self._stop.set()
            return
        self._log.warning(
            DAEMON_STOPPING,
            signal=sig.name,
            sweeps_in_flight=in_flight,
            reason="second signal: cancelling the sweep in flight (the next sweep resumes it)",
        )
        self._cancel()

    def _cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _drain(self) -> bool:
        """Stop starting sweeps, let the one in flight finish, stop the scheduler. True if
        nothing had to be cancelled."""
        self._draining = True
        if self._scheduler.state == STATE_RUNNING:
            self._scheduler.pause()
        pending = {t for t in self._tasks if not t.done()}
        clean = self._signals < 2
        if pending:
            timeout = self.config.daemon.drain_timeout.total_seconds()
            _, late = await asyncio.wait(pending, timeout=timeout)
            if late:
                self._log.error(DRAIN_TIMEOUT, sweeps=len(late), timeout_s=timeout)
                self._cancel()
                await asyncio.wait(late)
            clean = not late and self._signals < 2
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # let the scheduler's shutdown callback run
        return clean

    def _reload_failed(self, exc: Exception) -> None:
        self.metrics.reloads.labels("failed").inc()
        self._log.error(
            DAEMON_RELOAD_FAILED,
            path=str(self.path),
            reason=redaction.scrub(_reason(exc)),
            kept="the policy loaded before",
        )
        self.systemd.notify(READY, f"STATUS={self._status()}; the reload failed")

    def _on_reload(self) -> None:
        if self._draining:
            return
        self.systemd.reloading(f"reloading {self.path}")
        try:
            config = application.load(self.path)
            notifier = Notifier(config.notify, application.make_aws(config))
        except Exception as exc:  # a signal handler must not raise: keep the old policy
            self._reload_failed(exc)
            return
        restart = _needs_restart(self.config, config)
        old = self.config
        try:
            self._schedule(config)
        except Exception as exc:
            self._schedule(old)  # the jobs of the policy still in force
            self._reload_failed(exc)
            return
        self.config = config
        self.notifier = notifier
        self.metrics.preset({r.kind for r in config.rules}, channel_results(config.notify))
        self.metrics.reloads.labels("ok").inc()
        self._log.info(
            DAEMON_RELOADED,
            path=str(self.path),
            rules=len(config.rules),
            jobs=self._jobs(),
            **({"restart_needed_for": restart} if restart else {}),
        )
        self.systemd.notify(READY, f"STATUS={self._status()}")


def _reason(exc: Exception) -> str:
    """Why a reload failed, in one line (a ``ConfigError`` lists each problem)."""
    if isinstance(exc, ConfigError):
        return "; ".join(exc.problems)
    return f"{type(exc).__name__}: {exc}"


def _needs_restart(old: Config, new: Config) -> list[str]:
    """Settings a reload cannot apply (the listening socket, the audit log's sinks)."""
    changed: list[str] = []
    if (old.daemon.listen_host, old.daemon.listen_port) != (
        new.daemon.listen_host,
        new.daemon.listen_port,
    ):
        changed.append("daemon.listen")
    if old.audit != new.audit:
        changed.append("audit")
    return changed


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None
