"""A fault-injecting HTTP proxy in front of the moto server (standard library only).

``FaultProxy(upstream, plan)`` listens on a free port of 127.0.0.1 and forwards every
request to ``upstream``, relaying status, headers and body (hop-by-hop headers stripped,
Content-Length recomputed). Client connections are HTTP/1.1 keep-alive; each request opens
a fresh upstream connection (moto's werkzeug server closes after every response anyway).

Per request, one seeded ``random.Random`` draws a latency, a fault and a 5xx status, in that
order and under a lock, so the same seed and request sequence inject the same faults:
``throttle`` answers 400 ``Throttling`` (query protocol) / ``ThrottlingException`` (JSON);
``server_error`` answers 500 ``InternalFailure`` or 503 ``ServiceUnavailable``;
``drop_before`` closes the connection unforwarded (not applied); ``drop_after`` forwards
(applied upstream), then closes the connection without answering.

A one-shot hook registered with ``on()`` overrides the drawn fault of the request it fires
on; its drop also counts as ``dropped_before`` / ``dropped_after``. A ``hold()`` keeps one
request waiting — before it is forwarded, or after it was applied and before it is
answered — until the test releases it (a slow network, or a worker whose reply is late).
Hence ``requests == forwarded + throttled + server_errors + dropped_before +
upstream_errors`` (answered 502). ``calls_seen()`` lists the (service, action) of every
request, ``requests_seen()`` the requests themselves.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Fault = Literal["none", "throttle", "server_error", "drop_before", "drop_after"]
Response = tuple[int, str, list[tuple[str, str]], bytes]  # status, reason, headers, body

FAULTS: tuple[Fault, ...] = ("throttle", "server_error", "drop_before", "drop_after")
COUNTER = {"throttle": "throttled", "server_error": "server_errors"}
COUNTER |= {"drop_before": "dropped_before", "drop_after": "dropped_after"}
COUNTS: tuple[str, ...] = ("requests", "connections", "forwarded", "throttled")
COUNTS += ("server_errors", "dropped_before", "dropped_after", "hooks_fired", "upstream_errors")
HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "te", "trailers"))
HOP_BY_HOP |= {"proxy-authorization", "transfer-encoding", "upgrade", "expect", "content-length"}
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
_KEY_ID = re.compile(r"Credential=([A-Z0-9]+)/")
_REGION = re.compile(r"Credential=[^/]+/[^/]+/([^/]+)/[^/]+/aws4_request")
_STS_HOST = re.compile(r"^sts\.([a-z0-9-]+)\.amazonaws\.com")
_CREATED = re.compile(r"<AccessKeyId>([A-Z0-9]+)</AccessKeyId>")


@dataclass(frozen=True)
class FaultPlan:
    """Fault rates (each in [0, 1], summing to at most 1) and a latency range in seconds."""

    seed: int = 0
    latency: tuple[float, float] = (0.0, 0.0)
    throttle: float = 0.0
    server_error: float = 0.0
    drop_before: float = 0.0
    drop_after: float = 0.0
    actions: frozenset[str] | None = None  # faults only for these; latency applies to all

    def __post_init__(self) -> None:
        rates = (self.throttle, self.server_error, self.drop_before, self.drop_after)
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must lie in [0, 1] and sum to <= 1: {rates}")
        if not 0.0 <= self.latency[0] <= self.latency[1]:
            raise ValueError(f"latency must be (low, high) with 0 <= low <= high: {self.latency}")


@dataclass(frozen=True)
class Request:
    """One proxied request; ``headers`` has lower-cased names, ``action``/``service`` may be ''."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    action: str
    service: str


@dataclass
class _Hook:
    action: str
    phase: Literal["before", "after"]
    nth: int
    callback: Callable[[], None]
    match: Callable[[Request], bool] | None
    seen: int = 0


@dataclass
class Held:
    """A request ``hold()`` keeps waiting: ``reached`` is set when it arrives (phase
    "before") or has been applied upstream (phase "after"); ``release()`` lets it go on."""

    action: str
    phase: Literal["before", "after"]
    nth: int
    match: Callable[[Request], bool] | None
    seen: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)  # after the release

    def release(self) -> None:
        self.released.set()

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the held request has arrived (or raise ``TimeoutError``)."""
        if not self.reached.wait(timeout):
            raise TimeoutError(f"no {self.action} request reached the hold in {timeout}s")


READ_PREFIXES = ("Get", "List", "Describe", "GenerateCredentialReport", "Query", "Scan")
READ_PREFIXES += ("BatchGet", "Simulate")


def is_mutating(action: str) -> bool:
    """Whether an AWS action may change something: anything but reads (``Get*``, ``List*``,
    ``Describe*``, DynamoDB's ``Query``/``Scan``/``BatchGetItem``, ``Simulate*`` policy
    checks and ``GenerateCredentialReport``, which only refreshes a report). An action
    the proxy could not read ('') counts as mutating."""
    return not action.startswith(READ_PREFIXES)


def parse_request(method: str, path: str, headers: dict[str, str], body: bytes) -> Request:
    """A ``Request`` with its action (X-Amz-Target or form/query ``Action=``) and service."""
    target = headers.get("x-amz-target", "")
    if target:
        action = target.rpartition(".")[2]
    else:
        form = urllib.parse.urlsplit(path).query
        if "x-www-form-urlencoded" in headers.get("content-type", ""):
            form = f"{form}&{body.decode('utf-8', 'replace')}"
        action = urllib.parse.parse_qs(form).get("Action", [""])[0]
    scope = _SCOPE.search(headers.get("authorization", ""))
    return Request(method, path, headers, body, action, scope.group(1) if scope else "")


def request_region(request: Request) -> str:
    """The region a request is for: a regional STS endpoint's host
    (``sts.eu-west-1.amazonaws.com``), else its SigV4 credential scope
    (``Credential=AKID/DATE/REGION/SERVICE/aws4_request``); '' if neither says."""
    host = _STS_HOST.match(request.headers.get("host", ""))
    if host:
        return host.group(1)
    scope = _REGION.search(request.headers.get("authorization", ""))
    return scope.group(1) if scope else ""


def choose(plan: FaultPlan, rng: random.Random, action: str) -> tuple[float, Fault, int]:
    """Draw (latency, fault, 5xx status) for one request: always three draws from ``rng``."""
    delay = rng.uniform(*plan.latency)
    roll = rng.random()
    status = 500 if rng.random() < 0.5 else 503
    if plan.actions is not None and action not in plan.actions:
        return delay, "none", status
    rates = (plan.throttle, plan.server_error, plan.drop_before, plan.drop_after)
    for fault, rate in zip(FAULTS, rates, strict=True):
        if roll < rate:
            return delay, fault, status
        roll -= rate
    return delay, "none", status


def error_response(request: Request, status: int) -> Response:
    """A 400 throttling, 500 or 503 error shaped as the request's service sends it."""
    code = {500: "InternalFailure", 503: "ServiceUnavailable"}.get(status, "Throttling")
    message = "Rate exceeded" if status == 400 else "Injected by FaultProxy"
    target = request.headers.get("x-amz-target", "")
    if target:  # JSON protocol; DynamoDB speaks 1.0 and namespaces its error types
        code += "Exception" if status == 400 else ""
        dynamo = target.startswith("DynamoDB_")
        kind = f"com.amazonaws.dynamodb.v20120810#{code}" if dynamo else code
        content_type = f"application/x-amz-json-1.{0 if dynamo else 1}"
        body = json.dumps({"__type": kind, "message": message}).encode()
    else:  # query protocol (IAM, STS)
        side = "Sender" if status < 500 else "Receiver"
        content_type = "text/xml"
        body = (
            f"<ErrorResponse><Error><Type>{side}</Type><Code>{code}</Code><Message>{message}"
            f"</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        ).encode()
    return status, "", [("Content-Type", content_type)], body


def _invalid_token() -> Response:
    """STS's answer to a key it does not know yet."""
    body = (
        "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>"
        "The security token included in the request is invalid.</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    return 403, "Forbidden", [("Content-Type", "text/xml")], body


@dataclass
class TokenBucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` held (full at the first
    ``take``), on ``clock`` (seconds; a fake clock in a simulation)."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = -1.0
    at: float = 0.0

    def take(self) -> bool:
        now = self.clock()
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class FaultProxy:
    """Forwards HTTP to ``upstream`` and injects the faults of a ``FaultPlan`` or a hook."""

    def __init__(self, upstream: str, plan: FaultPlan = FaultPlan()) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._plan = plan
        self._rng = random.Random(plan.seed)
        self._hooks: list[_Hook] = []
        self._holds: list[Held] = []
        # Reject STS calls signed by access keys younger than this, per region (None: any).
        self._young: dict[str | None, float] = {}
        self._bucket: TokenBucket | None = None  # IAM's per-account token bucket, when modelled
        self._born: dict[str, float] = {}  # access key ID -> when CreateAccessKey answered
        self._counts: Counter[str] = Counter()
        self._actions: list[str] = []
        self._requests: list[Request] = []  # every request, for ``calls_seen``
        self._signed: list[tuple[str, str]] = []  # (access key ID that signed it, action)
        self._sts: list[tuple[str, str, int]] = []  # (signing key ID, region, status)
        self._sockets: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> FaultProxy:
        """Serve in a daemon thread; returns ``self``."""
        serve = self._server.serve_forever
        self._thread = threading.Thread(target=serve, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and cut every open client connection."""
        self.release_all()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace the plan and restart the random stream from ``plan.seed``."""
        with self._lock:
            self._plan = plan
            self._rng = random.Random(plan.seed)

    def on(
        self,
        action: str,
        *,
        phase: Literal["before", "after"],
        nth: int = 1,
        callback: Callable[[], None],
        match: Callable[[Request], bool] | None = None,
    ) -> None:
        """At the nth request for ``action`` passing ``match``: call ``callback`` and drop.

        Phase "before" calls back, then drops without forwarding; "after" forwards (the call
        is applied), calls back, then drops without answering. The hook fires once.
        ``match`` runs under the proxy's lock: keep it a quick predicate.
        """
        if nth < 1:
            raise ValueError(f"nth must be >= 1, not {nth}")
        with self._lock:
            self._hooks.append(_Hook(action, phase, nth, callback, match))

    def hold(
        self,
        action: str,
        *,
        phase: Literal["before", "after"],
        nth: int = 1,
        match: Callable[[Request], bool] | None = None,
    ) -> Held:
        """Hold the nth request for ``action`` passing ``match``: "before" forwarding it,
        or "after" it was applied and before it is answered, until ``release()``."""
        if nth < 1:
            raise ValueError(f"nth must be >= 1, not {nth}")
        held = Held(action, phase, nth, match)
        with self._lock:
            self._holds.append(held)
        return held

    def reject_young_keys(self, seconds: float, *, region: str | None = None) -> None:
        """Model IAM's eventual consistency: answer ``InvalidClientTokenId`` (403) to an STS
        call signed by an access key created less than ``seconds`` ago through this proxy —
        in ``region`` only (its regional endpoint: the request's host, else the region of
        its SigV4 credential scope), or in every region not given its own time (None)."""
        with self._lock:
            self._young[region] = seconds

    def limit_iam(self, rate: float, burst: float | None = None) -> None:
        """Model IAM's request quota: a token bucket of ``rate`` calls per second holding
        at most ``burst`` (default ``rate``); an IAM call finding it empty is answered
        ``Throttling`` (400), as IAM does, and counted as throttled."""
        with self._lock:
            self._bucket = TokenBucket(rate, burst if burst is not None else rate)

    def _over_quota(self, request: Request) -> bool:
        if request.service != "iam":
            return False
        with self._lock:
            return self._bucket is not None and not self._bucket.take()

    def _too_young(self, request: Request) -> bool:
        match = _KEY_ID.search(request.headers.get("authorization", ""))
        region = request_region(request)
        with self._lock:
            young = self._young.get(region, self._young.get(None, 0.0))
            born = self._born.get(match.group(1)) if match and young else None
            return born is not None and time.monotonic() - born < young

    def _saw_created(self, request: Request, response: Response | None) -> None:
        if request.action != "CreateAccessKey" or response is None or response[0] != 200:
            return
        made = _CREATED.search(response[3].decode("utf-8", "replace"))
        if made:
            with self._lock:
                self._born[made.group(1)] = time.monotonic()

    def release_all(self) -> None:
        """Let every held request go on (the proxy's shutdown does this too)."""
        with self._lock:
            holds = list(self._holds)
        for held in holds:
            held.release()

    def counts(self) -> dict[str, int]:
        """A snapshot of the counters in ``COUNTS`` (connections = client sockets accepted)."""
        with self._lock:
            return {name: self._counts[name] for name in COUNTS}

    def actions_seen(self) -> list[str]:
        """Every request's action in arrival order ('' when none could be read)."""
        with self._lock:
            return list(self._actions)

    def calls_seen(self) -> list[tuple[str, str]]:
        """(service, action) of every request in arrival order: the service is its SigV4
        signing name (``iam``, ``sts``, ``dynamodb``, ``secretsmanager``, ``ssm``: the IAM
        action prefixes too), '' where the proxy could not read one."""
        with self._lock:
            return [(r.service, r.action) for r in self._requests]

    def requests_seen(self) -> list[Request]:
        """Every request in arrival order, whole (headers, body), to read its parameters."""
        with self._lock:
            return list(self._requests)

    def actions_signed_by(self, key_id: str) -> list[str]:
        """The actions of the requests signed with access key ``key_id``, in order."""
        with self._lock:
            return [action for signer, action in self._signed if signer == key_id]

    def sts_answers(self, key_id: str) -> list[tuple[str, int]]:
        """(region, HTTP status) of each STS request signed with ``key_id``, in order."""
        with self._lock:
            return [(region, status) for signer, region, status in self._sts if signer == key_id]

    def _answered(self, request: Request, status: int) -> None:
        if request.service != "sts":
            return
        signer = _KEY_ID.search(request.headers.get("authorization", ""))
        with self._lock:
            self._sts.append((signer.group(1) if signer else "", request_region(request), status))

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)
            self._counts["connections"] += add

    def _held(self, request: Request) -> Held | None:
        """The hold this request reaches, if any (each hold catches one request)."""
        with self._lock:
            for held in self._holds:
                if held.action == request.action and (held.match is None or held.match(request)):
                    held.seen += 1
                    if held.seen == held.nth:
                        return held
        return None

    def _decide(self, request: Request) -> tuple[float, Fault, int, _Hook | None]:
        """Count the request and draw its fault; a hook reaching its nth match overrides it."""
        with self._lock:
            self._counts["requests"] += 1
            self._actions.append(request.action)
            self._requests.append(request)
            signer = _KEY_ID.search(request.headers.get("authorization", ""))
            self._signed.append((signer.group(1) if signer else "", request.action))
            delay, fault, status = choose(self._plan, self._rng, request.action)
            fired: _Hook | None = None
            for hook in list(self._hooks):
                if hook.action == request.action and (hook.match is None or hook.match(request)):
                    hook.seen += 1
                    if hook.seen == hook.nth and fired is None:
                        fired = hook
                        self._hooks.remove(hook)
                        self._counts["hooks_fired"] += 1
        if fired is not None:
            fault = "drop_before" if fired.phase == "before" else "drop_after"
        return delay, fault, status, fired

    def _forward(self, request: Request, headers: list[tuple[str, str]]) -> Response:
        """Send ``request`` upstream on a fresh connection and read the whole response."""
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            connection.putrequest(request.method, request.path, True, True)
            for name, value in headers:
                connection.putheader(name, value)
            if request.body or request.method in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(request.body)))
            connection.endheaders(request.body or None)
            answer = connection.getresponse()
            response = answer.status, answer.reason, answer.getheaders(), answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self._count("upstream_errors")
            return 502, "Bad Gateway", [("Content-Type", "text/plain")], str(exc).encode()
        finally:
            connection.close()
        self._count("forwarded")
        return response


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that went away (a hook may kill them); loud otherwise."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Relays one client connection's requests (HTTP/1.1 keep-alive) through the proxy."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, add=False)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the proxy's counts are its log."""

    def do_request(self) -> None:
        """Read the request, then answer an error, drop, or forward (and maybe drop)."""
        proxy = self.server.proxy
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(411, "FaultProxy needs a Content-Length body")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | tokens]
        request = parse_request(self.command, self.path, {k.lower(): v for k, v in headers}, body)
        delay, fault, status, hook = proxy._decide(request)
        held = proxy._held(request)
        if delay > 0:
            time.sleep(delay)
        if held is not None and held.phase == "before":
            held.reached.set()
            held.released.wait(300)
        if fault == "none" and hook is None and proxy._over_quota(request):
            fault = "throttle"
        if fault in ("throttle", "server_error"):
            proxy._count(COUNTER[fault])
            self._answer(*error_response(request, 400 if fault == "throttle" else status))
            return
        if request.service == "sts" and proxy._too_young(request):
            proxy._answered(request, 403)
            self._answer(*_invalid_token())
            return
        response = None if fault == "drop_before" else proxy._forward(request, headers)
        if response is not None and fault == "none":
            proxy._answered(request, response[0])
        proxy._saw_created(request, response)
        if held is not None and held.phase == "after":
            held.reached.set()
            held.released.wait(300)
        if fault in ("drop_before", "drop_after"):
            try:
                if hook is not None:
                    hook.callback()
            finally:
                proxy._count(COUNTER[fault])
                self._drop()
        elif response is not None:
            self._answer(*response)
        if held is not None:
            held.answered.set()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_request

    def _answer(
        self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        """Write a response with the relayed headers and a correct Content-Length."""
        self.send_response_only(status, reason or None)
        length = str(len(body))
        for name, value in headers:
            if name.lower() == "content-length" and self.command == "HEAD":
                length = value
            elif name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        if not (100 <= status < 200 or status in (204, 304)):
            self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drop(self) -> None:
        """Close the client connection without writing a byte of response."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
