"""rotator.daemon.http: the daemon's HTTP endpoint, over real sockets: what it answers,
and that idle, slow or piling-up clients cannot hold it (or the daemon's file
descriptors)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from rotator.daemon import http as health

STATE: dict[str, Any] = {"healthy": True}


def check() -> tuple[bool, dict[str, Any]]:
    return bool(STATE["healthy"]), {"scheduler": "running" if STATE["healthy"] else "paused"}


def metrics(accept: str) -> tuple[bytes, str]:
    if accept.startswith("application/openmetrics-text"):
        return b"rotator_sweeps_total 1.0\n# EOF\n", "application/openmetrics-text"
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
async def endpoint() -> Any:
    served = await health.serve(
        "127.0.0.1", 0, health=check, metrics=metrics, max_connections=4, lifetime=0.5
    )
    STATE["healthy"] = True
    yield served
    await served.close()


@pytest.fixture
def port(endpoint: health.Endpoint) -> int:
    return endpoint.address[1]


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
    status, headers, body = await ask(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"rotator_sweeps_total 1.0\n")
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert headers["Content-Length"] == str(len(body))
    status, headers, body = await ask(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == "25"


async def test_metrics_are_served_in_the_format_the_accept_header_asks_for(port: int) -> None:
    accept = b"Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n"
    status, headers, body = await ask(
        port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + accept + b"\r\n"
    )
    assert (status, headers["Content-Type"]) == (200, "application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /secrets HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"garbage\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without a Host header
    ],
)
async def test_other_requests_are_refused(port: int, request_bytes: bytes, expected: int) -> None:
    status, _, _ = await ask(port, request_bytes)
    assert status == expected


async def test_a_client_that_sends_nothing_is_dropped_and_others_are_still_served(
    port: int,
) -> None:
    reader, silent = await asyncio.open_connection("127.0.0.1", port)
    status, _, _ = await ask(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    assert await asyncio.wait_for(reader.read(), 5) == b"", "closed without an answer"
    silent.close()


async def trickle(port: int) -> float:
    """Send a request's headers one byte every 50 ms, never finishing; the seconds until
    the server hung up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = asyncio.get_running_loop().time()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        for _ in range(200):
            writer.write(b"x")
            await writer.drain()
            if reader.at_eof():
                break
            await asyncio.sleep(0.05)
    except ConnectionError:
        pass
    finally:
        writer.close()
    return asyncio.get_running_loop().time() - began


async def test_a_client_sending_its_request_slowly_is_cut_off_at_the_lifetime(port: int) -> None:
    assert await trickle(port) < 2, "cut off at the 0.5 s lifetime, not after 10 s of bytes"


async def test_idle_connections_beyond_the_limit_make_room_oldest_first(
    endpoint: health.Endpoint, port: int
) -> None:
    """Ten idle clients against a limit of four: the endpoint never holds more than
    four, the six oldest are closed, and a real request is still answered."""
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
    await asyncio.sleep(0.05)
    assert endpoint.connections == 4
    closed = [await asyncio.wait_for(reader.read(), 0.2) for reader, _ in idle[:6]]
    assert closed == [b""] * 6, "the oldest were closed to make room"
    status, _, body = await ask(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    assert endpoint.connections <= 4
    for _, writer in idle:
        writer.close()


async def test_many_idle_clients_do_not_take_more_descriptors_than_the_limit(
    endpoint: health.Endpoint, port: int
) -> None:
    """Two hundred idle connections cost the server no more than its limit of sockets."""
    before = len(os.listdir("/proc/self/fd"))
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(200)]
    await asyncio.sleep(0.1)
    # This process holds the 200 client sockets; the server's side adds at most 4.
    assert len(os.listdir("/proc/self/fd")) - before <= 200 + 4
    assert (await ask(port, b"GET /metrics HTTP/1.0\r\n\r\n"))[0] == 200
    for _, writer in idle:
        writer.close()
    await asyncio.sleep(0.7)
    assert endpoint.connections == 0, "every connection ends by its lifetime at the latest"


async def test_an_address_in_use_is_an_oserror(port: int) -> None:
    with pytest.raises(OSError, match="in use"):
        await health.serve("127.0.0.1", port, health=check, metrics=metrics)


async def test_close_stops_listening(endpoint: health.Endpoint, port: int) -> None:
    await endpoint.close()
    with pytest.raises(ConnectionError):
        await asyncio.open_connection("127.0.0.1", port)
