"""Run ``rotator daemon`` as a real subprocess and watch what it does: its audit log,
its HTTP endpoint, its exit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import Cli

Event = dict[str, Any]


def daemon_module() -> list[str]:
    """How to start the real ``rotator`` command."""
    return ["-m", "rotator"]


@dataclass
class Daemon:
    """A running ``rotator daemon`` and what it wrote to the audit log."""

    cli: Cli
    proc: subprocess.Popen[bytes]

    @classmethod
    def launch(cls, cli: Cli, *args: str) -> Daemon:
        """Start it on ``cli``'s policy and environment; output goes to files in its tmp."""
        argv = [sys.executable, *daemon_module(), "daemon", "--config", str(cli.config), *args]
        with (cli.tmp / "daemon.out").open("ab") as out, (cli.tmp / "daemon.err").open("ab") as err:
            proc = subprocess.Popen(argv, env=cli.environ(), stdout=out, stderr=err)
        return cls(cli, proc)

    @property
    def output(self) -> str:
        """Everything it printed (stdout, then stderr)."""
        return "".join(
            (self.cli.tmp / name).read_text(errors="replace")
            for name in ("daemon.out", "daemon.err")
        )

    def events(self) -> list[Event]:
        """The audit log's complete lines (the daemon may be writing the next one)."""
        path = self.cli.tmp / "audit.jsonl"
        text = path.read_text() if path.exists() else ""
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def wait_for(self, test: Callable[[list[Event]], bool], timeout: float = 60.0) -> list[Event]:
        """The audit events once ``test(events)`` holds; fails if the daemon exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if test(events):
                return events
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.output}")
            time.sleep(0.05)
        raise AssertionError(f"timed out; events: {[e['event'] for e in self.events()]}")

    def wait_count(self, name: str, count: int = 1, timeout: float = 60.0) -> list[Event]:
        """The events named ``name`` once there are at least ``count`` of them."""
        events = self.wait_for(lambda es: len(named(es, name)) >= count, timeout)
        return named(events, name)

    @property
    def url(self) -> str:
        return f"http://{self.wait_count('daemon.started')[0]['listen']}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of /metrics (None if absent)."""
        for family in text_string_to_metric_families(self.get("/metrics")[1]):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def wait_metric(
        self, name: str, at_least: float, timeout: float = 60.0, **labels: str
    ) -> float:
        """The sample once it reaches ``at_least`` (the daemon updates its metrics after
        the sweep's own ``sweep.finished`` event)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.metric(name, **labels)
            if found is not None and found >= at_least:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{name}{labels} = {self.metric(name, **labels)}, not >= {at_least}")

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 180) -> int:
        """Signal it (if still running) and wait for it; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def named(events: list[Event], name: str) -> list[Event]:
    return [e for e in events if e["event"] == name]
