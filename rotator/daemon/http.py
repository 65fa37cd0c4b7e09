"""The daemon's HTTP endpoint: ``GET /healthz`` and ``GET /metrics``, on aiohttp's server.

``/healthz`` answers 200 or 503 with a JSON body saying why; ``/metrics`` is Prometheus'
exposition (OpenMetrics if the request's ``Accept`` asks for it). GET and HEAD only, one
request per connection (``Connection: close``). Nothing secret is served.

It cannot be exhausted: a daemon whose file descriptors all went to idle connections
could not open the sockets its own sweep needs. So

* at most ``max_connections`` are open at once; when one more arrives, the oldest is
  closed to make room (it is the one most likely idle: every request here is answered at
  once), so a real client is still served while idle clients pile up;
* every connection is closed ``lifetime`` seconds after it was accepted, whatever it is
  doing: sending its request slowly, sending nothing, or not reading the answer;
* the listen queue is short (``BACKLOG``): asyncio accepts up to that many connections at
  a time before the server sees them, so a burst costs at most that many descriptors more.
  Clients beyond it wait in the kernel, holding none of the daemon's.

aiohttp parses HTTP (bounded line and header sizes, 400 for garbage); ``route`` decides
the answer and is pure but for the two callbacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MAX_CONNECTIONS = 32  # open at once; Prometheus and a probe or two need a handful
# The listen queue, and so how many connections asyncio accepts in one turn of the loop
# before the server can make room: each is a descriptor until then.
BACKLOG = 16
LIFETIME = 10.0  # seconds a connection may stay open, from accept to close
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Answer:
    """One response."""

    status: int
    content_type: str
    body: bytes


# () -> (healthy, details): the details become /healthz's JSON body.
HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]
# (the request's Accept header) -> (exposition, content type)
MetricsRender = Callable[[str], tuple[bytes, str]]


def route(
    method: str, path: str, health: HealthCheck, metrics: MetricsRender, accept: str = ""
) -> Answer:
    """The answer to ``method path`` (pure but for the two callbacks); ``accept`` is the
    request's Accept header, for the format of ``/metrics``."""
    if method not in ("GET", "HEAD"):
        return Answer(405, _TEXT, b"only GET and HEAD\n")
    if path == "/healthz":
        healthy, details = health()
        body = json.dumps({"status": "ok" if healthy else "unhealthy", **details}, default=str)
        return Answer(200 if healthy else 503, "application/json", body.encode() + b"\n")
    if path == "/metrics":
        exposition, content_type = metrics(accept)
        return Answer(200, content_type, exposition)
    if path == "/":
        return Answer(200, _TEXT, b"rotator daemon: /healthz /metrics\n")
    return Answer(404, _TEXT, b"not found: try /healthz or /metrics\n")


class _BoundedServer(web.Server):
    """aiohttp's low-level server, holding at most ``limit`` connections, each for at
    most ``lifetime`` seconds (see the module's docstring)."""

    def __init__(self, handler: Any, *, limit: int, lifetime: float, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limit = limit
        self.lifetime = lifetime
        # Open connections, oldest first, each with the timer that ends it.
        self.open: dict[web.RequestHandler, asyncio.TimerHandle] = {}

    def __call__(self) -> web.RequestHandler:
        while len(self.open) >= self.limit:
            self._end(next(iter(self.open)))
        handler = super().__call__()
        self.open[handler] = asyncio.get_running_loop().call_later(
            self.lifetime, self._end, handler
        )
        return handler

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        timer = self.open.pop(handler, None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(handler, exc)

    def _end(self, handler: web.RequestHandler) -> None:
        """Close ``handler``'s connection now, discarding what it has not sent."""
        timer = self.open.pop(handler, None)
        if timer is not None:
            timer.cancel()
        if handler.transport is not None:
            handler.transport.abort()  # the socket is closed on the loop's next turn
        else:  # accepted, not yet connected: it closes as soon as it is
            handler.force_close()


@dataclass
class Endpoint:
    """The listening endpoint; ``close`` it when done."""

    runner: web.ServerRunner
    server: _BoundedServer

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) it listens on (its first socket)."""
        host, port = self.runner.addresses[0][:2]
        return str(host), int(port)

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self.server.open)

    async def close(self) -> None:
        """Stop listening and close every connection."""
        await self.runner.cleanup()


async def serve(
    host: str,
    port: int,
    *,
    health: HealthCheck,
    metrics: MetricsRender,
    max_connections: int = MAX_CONNECTIONS,
    lifetime: float = LIFETIME,
) -> Endpoint:
    """Listen on ``host:port`` (0: any free port; see ``Endpoint.address``) until closed.
    Raises ``OSError`` if the address cannot be bound."""
    # aiohttp logs through the logging module; what matters reaches the audit log.
    for name in ("aiohttp.access", "aiohttp.server", "aiohttp.web"):
        quiet = logging.getLogger(name)
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        answer = route(request.method, request.path, health, metrics, accept)
        response = web.Response(
            status=answer.status,
            body=answer.body,
            headers={"Content-Type": answer.content_type, "Cache-Control": "no-store"},
        )
        response.force_close()  # one request per connection
        return response

    server = _BoundedServer(
        handle,
        limit=max_connections,
        lifetime=lifetime,
        access_log=None,
        keepalive_timeout=lifetime,
    )
    runner = web.ServerRunner(server, shutdown_timeout=lifetime)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=BACKLOG).start()
    except BaseException:
        await runner.cleanup()
        raise
    return Endpoint(runner, server)
