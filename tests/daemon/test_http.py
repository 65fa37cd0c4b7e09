"""rotator.daemon.http: the daemon's tiny HTTP endpoint, over a real socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from rotator.daemon import http as health

STATE: dict[str, Any] = {"healthy": True}


def check() -> tuple[bool, dict[str, Any]]:
    return bool(STATE["healthy"]), {"scheduler": "running" if STATE["healthy"] else "paused"}


def metrics() -> tuple[bytes, str]:
    return b"rotator_sweeps_total 1.0\n", "text/plain; version=0.0.4; charset=utf-8"


async def ask(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


@pytest.fixture
async def port() -> Any:
    server = await health.serve("127.0.0.1", 0, health=check, metrics=metrics)
    STATE["healthy"] = True
    yield health.bound(server)[1]
    server.close()
    await server.wait_closed()


async def test_healthz_is_200_with_details_while_healthy_and_503_otherwise(port: int) -> None:
    status, headers, body = await ask(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "scheduler": "running"}
    STATE["healthy"] = False
    status, _, body = await ask(port, b"GET /healthz?verbose=1 HTTP/1.0\r\n\r\n")
    assert status == 503
    assert json.loads(body)["status"] == "unhealthy"


async def test_metrics_are_served_with_prometheus_content_type_and_head_has_no_body(
    port: int,
) -> None:
    status, headers, body = await ask(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert (status, body) == (200, b"rotator_sweeps_total 1.0\n")
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert headers["Content-Length"] == str(len(body))
    status, headers, body = await ask(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == "25"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /secrets HTTP/1.1\r\n\r\n", 404),
        (b"garbage\r\n\r\n", 400),
    ],
)
async def test_other_requests_are_refused(port: int, request_bytes: bytes, expected: int) -> None:
    status, _, _ = await ask(port, request_bytes)
    assert status == expected


async def test_a_client_that_sends_nothing_is_dropped_and_others_are_still_served(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "REQUEST_TIMEOUT", 0.2)
    reader, silent = await asyncio.open_connection("127.0.0.1", port)
    status, _, _ = await ask(port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert status == 200
    assert await asyncio.wait_for(reader.read(), 5) == b"", "closed without an answer"
    silent.close()


async def test_an_address_in_use_is_an_oserror(port: int) -> None:
    with pytest.raises(OSError, match="in use"):
        await health.serve("127.0.0.1", port, health=check, metrics=metrics)
