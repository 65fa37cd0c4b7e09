"""rotator.daemon.systemd: sd_notify datagrams, received on a real unix datagram socket as
systemd receives them."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.daemon.systemd import READY, STOPPING, Systemd


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd's notify socket: (its path, itself)."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_and_status_go_in_one_datagram(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    assert Systemd(socket=path).notify(READY, "STATUS=serving 127.0.0.1:9464")
    assert received(sock) == ["READY=1", "STATUS=serving 127.0.0.1:9464"]
    assert Systemd(socket=path).notify(STOPPING)
    assert received(sock) == ["STOPPING=1"]


def test_an_abstract_socket_is_named_with_an_at_sign() -> None:
    name = f"rotator-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Systemd(socket="@" + name).notify(READY)
        assert received(sock) == ["READY=1"]


def test_reloading_carries_the_monotonic_clock(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Systemd(socket=path).reloading("reloading /etc/rotator/rotator.toml")
    reloading, monotonic, status = received(sock)
    assert reloading == "RELOADING=1"
    assert before <= int(monotonic.removeprefix("MONOTONIC_USEC=")) <= before + 5_000_000
    assert status == "STATUS=reloading /etc/rotator/rotator.toml"


def test_outside_systemd_or_with_nobody_listening_nothing_is_sent_and_nothing_raised(
    tmp_path: Path,
) -> None:
    assert Systemd().notify(READY) is False
    assert Systemd(socket=str(tmp_path / "nobody")).notify(READY) is False


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Systemd()),
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, Systemd(socket="/run/systemd/notify")),
        ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "120000000"}, Systemd("@x", 120.0)),
        (
            {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "500000", "WATCHDOG_PID": "42"},
            Systemd("@x", 0.5),
        ),
        ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "500000", "WATCHDOG_PID": "7"}, Systemd("@x")),
        ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "0"}, Systemd("@x")),
        ({"NOTIFY_SOCKET": "", "WATCHDOG_USEC": "soon"}, Systemd()),
    ],
)
def test_the_environment_systemd_sets(environ: dict[str, str], expected: Systemd) -> None:
    assert Systemd.from_environ(environ, pid=42) == expected


async def test_the_watchdog_is_pinged_every_half_period_while_alive(
    listener: tuple[str, socket.socket],
) -> None:
    path, sock = listener
    sock.setblocking(False)
    alive = True
    task = asyncio.create_task(Systemd(socket=path, watchdog=0.2).keep_alive(lambda: alive))
    await asyncio.sleep(0.45)  # pings at 0, 0.1, 0.2, 0.3, 0.4
    alive = False  # a stuck scheduler: no more pings
    await asyncio.sleep(0.3)
    task.cancel()
    pings = []
    while True:
        try:
            pings.append(sock.recv(64).decode())
        except BlockingIOError:
            break
    assert pings == ["WATCHDOG=1"] * len(pings)
    assert 4 <= len(pings) <= 6


async def test_without_a_watchdog_keep_alive_returns_at_once() -> None:
    await asyncio.wait_for(Systemd(socket="@x").keep_alive(lambda: True), 1)
