"""The daemon's HTTP endpoint: ``GET /healthz`` and ``GET /metrics``, on asyncio streams.

Deliberately tiny: HTTP/1.1 with ``Connection: close``, GET and HEAD only, one request per
connection, a few seconds to send it. ``/healthz`` answers 200 or 503 with a JSON body
saying why; ``/metrics`` is Prometheus' text exposition. Nothing secret is served.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

REQUEST_TIMEOUT = 5.0  # seconds a client has to send its request line and headers
MAX_HEADERS = 100
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {503: "Service Unavailable"}


@dataclass(frozen=True)
class Answer:
    """One response."""

    status: int
    content_type: str
    body: bytes


# () -> (healthy, details): the details become /healthz's JSON body.
HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]
# () -> (exposition, content type)
MetricsRender = Callable[[], tuple[bytes, str]]


def route(method: str, path: str, health: HealthCheck, metrics: MetricsRender) -> Answer:
    """The answer to ``method path`` (pure but for the two callbacks)."""
    if method not in ("GET", "HEAD"):
        return Answer(405, "text/plain; charset=utf-8", b"only GET and HEAD\n")
    if path == "/healthz":
        healthy, details = health()
        body = json.dumps({"status": "ok" if healthy else "unhealthy", **details}, default=str)
        return Answer(200 if healthy else 503, "application/json", body.encode() + b"\n")
    if path == "/metrics":
        exposition, content_type = metrics()
        return Answer(200, content_type, exposition)
    if path == "/":
        return Answer(200, "text/plain; charset=utf-8", b"rotator daemon: /healthz /metrics\n")
    return Answer(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str] | None:
    """(method, path) of the request, its headers read and ignored; None if malformed."""
    parts = (await reader.readline()).decode("latin-1").split()
    for _ in range(MAX_HEADERS):
        if (await reader.readline()).strip() == b"":
            break
    else:
        return None
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    return parts[0].upper(), parts[1].split("?", 1)[0]


def _render(answer: Answer, *, head: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, '')}",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {len(answer.body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else answer.body)


async def serve(
    host: str, port: int, *, health: HealthCheck, metrics: MetricsRender
) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port; see ``bound``); serves until closed.
    Raises ``OSError`` if the address cannot be bound."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(_read_request(reader), REQUEST_TIMEOUT)
            if request is None:
                answer, head = Answer(400, "text/plain; charset=utf-8", b"bad request\n"), False
            else:
                answer, head = route(*request, health, metrics), request[0] == "HEAD"
            writer.write(_render(answer, head=head))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # a client that is slow, gone or sends garbage gets nothing
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)


def bound(server: asyncio.Server) -> tuple[str, int]:
    """The (host, port) ``server`` listens on (its first socket)."""
    host, port = server.sockets[0].getsockname()[:2]
    return str(host), int(port)
