"""``rotator daemon``: thin. Load the policy, configure the audit log as the CLI does,
feed the metrics from it, run the daemon until it is told to stop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from prometheus_client import disable_created_metrics

from rotator import app as application
from rotator.daemon.service import Daemon
from rotator.daemon.systemd import Systemd


def run(path: Path, *, run_now: bool = False) -> int:
    """Run the daemon for the policy at ``path``; returns the exit code (0: drained
    cleanly; 1: could not listen, or a sweep had to be cancelled). Raises ``ConfigError``
    for a bad policy file."""
    config = application.load(path)
    close = application.configure_audit(config)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series
    try:
        # systemd's notification protocol (Type=notify), not a rotator setting.
        systemd = Systemd.from_environ(os.environ, os.getpid())
        daemon = Daemon(config, path=path, run_now=run_now, systemd=systemd)
        daemon.metrics.install_tap()
        return asyncio.run(daemon.run())
    finally:
        close()
