"""systemd's service notification protocol (``sd_notify(3)``), for ``Type=notify``.

Under systemd the daemon says when it is ready (``READY=1``, once it listens and its
scheduler runs), reloading (``RELOADING=1`` on SIGHUP, then ``READY=1``) and stopping
(``STOPPING=1`` when a drain begins), with a one-line ``STATUS=``; and, when the unit has
``WatchdogSec=``, pings the watchdog (``WATCHDOG=1``) every half period from the event
loop, so a daemon whose loop hangs is restarted. Each message is one datagram to the
unix socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).
Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.

The variables are systemd's protocol, not rotator settings: the entry point hands them
over (``Systemd.from_environ``); nothing here reads the environment.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

READY = "READY=1"
RELOADING = "RELOADING=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"


@dataclass(frozen=True)
class Systemd:
    """Where to notify systemd (``None``: not under systemd) and the watchdog period."""

    socket: str | None = None
    watchdog: float | None = None  # seconds; None: no watchdog

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int) -> Systemd:
        """From ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (ignored when ``$WATCHDOG_PID``
        names another process, as ``sd_watchdog_enabled(3)`` says)."""
        watchdog: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not owner or owner == str(pid)):
            watchdog = int(usec) / 1_000_000
        return cls(socket=environ.get("NOTIFY_SOCKET") or None, watchdog=watchdog)

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) in one datagram. False if not
        under systemd or if it could not be sent; never raises, never blocks."""
        if self.socket is None:
            return False
        address = "\0" + self.socket[1:] if self.socket.startswith("@") else self.socket
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect(address)
                sock.send("\n".join(fields).encode())
        except OSError:
            return False
        return True

    def reloading(self, status: str) -> bool:
        """``RELOADING=1`` with the monotonic time systemd 253+ wants beside it."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING, f"MONOTONIC_USEC={now_usec}", f"STATUS={status}")

    async def keep_alive(self, alive: Callable[[], bool]) -> None:
        """Ping the watchdog every half period while ``alive()``; returns at once when
        there is no watchdog. Runs until cancelled."""
        if self.watchdog is None:
            return
        while True:
            if alive():
                self.notify(WATCHDOG)
            await asyncio.sleep(self.watchdog / 2)
