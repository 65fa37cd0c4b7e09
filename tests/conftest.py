"""Shared fixtures: a moto server over real HTTP, reset between tests, and clean state."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import structlog
from moto.server import ThreadedMotoServer

from rotator import redaction
from tests.support.moto import MotoSandbox, make_dynamodb_atomic

logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for the whole run, on a free port of 127.0.0.1; yields its URL."""
    make_dynamodb_atomic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> str:
    """The standard AWS environment pointed at the moto server, which is reset first."""
    MotoSandbox(moto_server).reset()
    for name in list(os.environ):
        if name.startswith(("AWS_", "ROTATOR_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    return moto_server


@pytest.fixture
def sandbox(aws_env: str) -> MotoSandbox:
    """Seeding and inspection helpers for the (freshly reset) moto account."""
    return MotoSandbox(aws_env)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    redaction.forget_all()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, a worker hands its tallies to the controller."""
    from tests.support.tally import TALLY

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["tally"] = dict(TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """Under pytest-xdist, the controller adds up the workers' tallies."""
    from tests.support.tally import TALLY

    TALLY.update(getattr(node, "workeroutput", {}).get("tally", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the robustness tallies (crash cases, faults injected) if any test added some."""
    from tests.support.tally import TALLY

    if TALLY:
        terminalreporter.section("robustness tally")
        for name, count in sorted(TALLY.items()):
            terminalreporter.write_line(f"{name}: {count}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tests (real processes, crash matrices, daemons: seconds to minutes
    each) first, the quick ones after: with two workers, the quick ones then fill in at
    the end instead of one worker finishing a long test alone. Order within each group,
    and so every test's own setup, is unchanged."""
    items.sort(key=lambda item: 0 if "/e2e/" in item.nodeid or "e2e" in item.keywords else 1)
