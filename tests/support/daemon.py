"""Run ``rotator daemon`` as a real subprocess and watch what it does: its audit log,
its HTTP endpoint, its exit."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
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
    # Attempts of each HTTP request when the connection is closed before the answer (by a
    # server making room for newer connections, see tests of the idle flood).
    tries: int = 1
    requests: int = 0  # get() calls
    attempts: int = 0  # connections they took

    @classmethod
    def launch(cls, cli: Cli, *args: str, nofile: int | None = None) -> Daemon:
        """Start it on ``cli``'s policy and environment; output goes to files in its tmp.
        ``nofile``: its limit of open file descriptors (RLIMIT_NOFILE)."""
        argv = [sys.executable, *daemon_module(), "daemon", "--config", str(cli.config), *args]

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with (cli.tmp / "daemon.out").open("ab") as out, (cli.tmp / "daemon.err").open("ab") as err:
            proc = subprocess.Popen(
                argv, env=cli.environ(), stdout=out, stderr=err, preexec_fn=limit
            )
        return cls(cli, proc)

    @property
    def open_files(self) -> int:
        """How many file descriptors it has open now."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

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

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.wait_count("daemon.started")[0]["listen"].rpartition(":")
        return host, int(port)

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) of ``GET path`` (up to ``tries`` attempts)."""
        self.requests += 1
        for attempt in range(1, self.tries + 1):
            self.attempts += 1
            try:
                with urllib.request.urlopen(self.url + path, timeout=10) as answer:
                    return answer.status, answer.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()
            except (ConnectionError, urllib.error.URLError):
                if attempt == self.tries:
                    raise
        raise AssertionError("unreachable")

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

    def wait(self, timeout: float = 180) -> int:
        """Wait for it to exit (after a signal already sent); its exit code."""
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


class IdleFlood:
    """Clients that keep ``size`` idle connections open or opening to ``address`` —
    connect without waiting, send nothing, reconnect whenever the server closes one —
    from a thread, for at most ``seconds`` and ``cap`` connections in all (loopback)."""

    def __init__(
        self, address: tuple[str, int], *, size: int, seconds: float = 120, cap: int = 200_000
    ) -> None:
        self.address = address
        self.size = size
        self.deadline = time.monotonic() + seconds
        self.cap = cap
        self.opened = 0  # connections attempted
        self.closed = 0  # ... that the server closed
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> IdleFlood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for sock in self._sockets:
            sock.close()

    def wait_rounds(self, rounds: int, timeout: float = 60) -> None:
        """Wait until the pool has been topped up ``rounds`` more times."""
        target = self.rounds + rounds
        deadline = time.monotonic() + timeout
        while self.rounds < target:
            assert time.monotonic() < deadline, "the flood does not progress"
            time.sleep(0.05)

    def wait_for(self, *, closed: int, timeout: float = 60) -> None:
        """Wait until the server has closed ``closed`` of the connections."""
        deadline = time.monotonic() + timeout
        while self.closed < closed:
            assert time.monotonic() < deadline, f"the server closed only {self.closed}"
            time.sleep(0.05)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            still = [s for s in self._sockets if _still_open(s)]
            self.closed += len(self._sockets) - len(still)
            self._sockets = still
            while len(self._sockets) < self.size and self.opened < self.cap:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex(self.address)  # EINPROGRESS: the kernel goes on with it
                self._sockets.append(sock)
                self.opened += 1
            self.rounds += 1
            self._stop.wait(0.1)


def _still_open(sock: socket.socket) -> bool:
    """False (and the socket closed) once the server has closed its end."""
    try:
        open_ = sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:  # connected (or still connecting), nothing sent: idle
        return True
    except OSError as exc:  # reset, refused; or not connected yet
        open_ = exc.errno == errno.ENOTCONN
    if not open_:
        sock.close()
    return open_


def named(events: list[Event], name: str) -> list[Event]:
    return [e for e in events if e["event"] == name]
