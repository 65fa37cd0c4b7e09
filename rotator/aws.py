"""AWS sessions and clients, and the one place botocore's errors become rotator's.

``Aws`` opens aioboto3 clients with rotator's retry configuration. The standard AWS
environment is honoured because aioboto3/botocore read it themselves: ``AWS_PROFILE``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` (and per service
``AWS_ENDPOINT_URL_IAM`` ...), credentials from the environment, files or instance roles.

``Clients`` is a pool for one session: it opens a client per (service, region) the first time
one is asked for and closes them all when its ``async with`` block ends.

``aws_errors`` converts ``ClientError`` / ``BotoCoreError`` into the ``rotator.errors``
tree: throttling, 5xx, dropped connections and ``EntityTemporarilyUnmodifiable`` are
``Transient``; everything else is ``Permanent`` (or a named subclass of it).
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Self

import aioboto3
from aiobotocore.credentials import AioCredentials, AioRefreshableCredentials
from aiobotocore.session import AioSession
from botocore.config import Config as BotoConfig
from botocore.context import get_context
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.loaders import create_loader
from botocore.regions import EndpointResolver
from botocore.utils import parse_timestamp

from rotator.errors import (
    AccessDenied,
    AwsError,
    ConfigError,
    DeleteConflict,
    LimitExceeded,
    NoSuchEntity,
    Permanent,
    Transient,
)
from rotator.pacing import Pacer

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServiceError",
        "RequestTimeout",
        "RequestTimeoutException",
        "EntityTemporarilyUnmodifiable",
        "ConcurrentModification",
        "ConcurrentModificationException",
        "ServiceFailure",
        "PriorRequestNotComplete",
        "IDPCommunicationError",
    }
)

_NAMED: Mapping[str, type[Permanent]] = {
    "NoSuchEntity": NoSuchEntity,
    "NoSuchEntityException": NoSuchEntity,
    "ResourceNotFoundException": NoSuchEntity,
    "LimitExceeded": LimitExceeded,
    "LimitExceededException": LimitExceeded,
    "DeleteConflict": DeleteConflict,
    "AccessDenied": AccessDenied,
    "AccessDeniedException": AccessDenied,
    "UnauthorizedOperation": AccessDenied,
}


# The services rotator opens clients for (the Lambda package keeps the data of these only).
SERVICES = ("iam", "sts", "dynamodb", "organizations", "secretsmanager", "sns", "ssm")


@functools.cache
def endpoint_resolver() -> EndpointResolver:
    """botocore's endpoint resolver over its endpoint data for ``SERVICES`` only, one for
    every session of the process. Each botocore session would otherwise load the data of
    every AWS service (``endpoints.json``: about 7 MB of Python objects) and keep it. The
    partitions (regions, DNS suffixes, defaults) are kept whole; a service left out would
    still resolve from its partition's defaults, as a service newer than botocore does."""
    loader = create_loader()  # its own cache: the whole file is dropped once trimmed
    endpoints, path = loader.load_data_with_path("endpoints")
    for partition in endpoints.get("partitions", []):
        services = partition.get("services", {})
        partition["services"] = {k: v for k, v in services.items() if k in SERVICES}
    return EndpointResolver(endpoints, uses_builtin_data=loader.is_builtin_path(path))


def convert(exc: ClientError | BotoCoreError, operation: str, ids: Mapping[str, str]) -> AwsError:
    """The rotator error for a botocore error raised by ``operation``."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in TRANSIENT_CODES or status >= 500:
            return Transient(operation, code, message, ids)
        return _NAMED.get(code, Permanent)(operation, code, message, ids)
    # BotoCoreError: connection dropped, timeouts, unparseable (e.g. a proxy's) responses.
    return Transient(operation, type(exc).__name__, str(exc), ids)


@contextmanager
def aws_errors(operation: str, **ids: str) -> Iterator[None]:
    """Convert botocore errors raised inside the block (``operation`` names the call)."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:  # bad input: exit 2
        raise ConfigError("AWS credentials", [f"{type(exc).__name__}: {NO_CREDENTIALS}"]) from None
    except ProfileNotFound as exc:
        raise ConfigError(
            "AWS credentials", [f"{exc}; see `aws configure list-profiles`"]
        ) from None
    except (ClientError, BotoCoreError) as exc:
        raise convert(exc, operation, ids) from None


NO_CREDENTIALS = (
    "no usable AWS credentials: run `aws configure`, set AWS_PROFILE, or set both "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


async def all_pages(
    call: Callable[..., Awaitable[dict[str, Any]]],
    items: str,
    operation: str,
    ids: Mapping[str, str] | None = None,
    *,
    each: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Every item under ``items`` of an IAM ``List*`` call, following ``Marker`` page by page
    (each item passed through ``each`` as its page arrives, if given).

    Written out rather than botocore's paginators so that the in-memory IAM twin
    (``rotator.testing``), which has the calls but not ``get_paginator``, serves too.
    """
    found: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        with aws_errors(operation, **(ids or {})):
            page = await call(**kwargs, **({"Marker": marker} if marker else {}))
        got = page.get(items, [])
        found.extend(got if each is None else map(each, got))
        if not page.get("IsTruncated"):
            return found
        marker = page["Marker"]


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Static credentials for one client (verifying a new access key). Not logged."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key=***)"


_SIGN_AS: ContextVar[Credentials | None] = ContextVar("rotator_sign_as", default=None)


@contextmanager
def signing_as(credentials: Credentials) -> Iterator[None]:
    """Within the block, calls this task makes on a ``signing_client`` are signed with
    ``credentials`` (other tasks sharing the client are not affected)."""
    token = _SIGN_AS.set(credentials)
    try:
        yield
    finally:
        _SIGN_AS.reset(token)


def signing_credentials() -> Credentials | None:
    """The credentials ``signing_as`` set for this task, if any."""
    return _SIGN_AS.get()


def _sign_as_caller(request: Any, **_: Any) -> None:
    """botocore's ``before-sign`` hook: sign this request with the calling task's
    ``signing_as`` credentials (botocore's own per-request credentials)."""
    credentials = _SIGN_AS.get()
    if credentials is None:
        return
    signing = request.context.setdefault("signing", {})
    signing["request_credentials"] = AioCredentials(
        credentials.access_key_id, credentials.secret_access_key
    )


def timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, fast for what AWS sends: ISO 8601 with a zone
    (``2026-12-03T07:00:00Z``) by ``datetime.fromisoformat``, about 200 times faster than
    botocore's ``dateutil`` (which also gives every such timestamp a ``tzlocal`` object of
    its own when the machine runs in UTC: 0.5 KB each, 5 MB for 10,000 users). Anything
    else (epoch seconds, RFC 822, no zone) is botocore's own parse."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    return parse_timestamp(value)  # type: ignore[no-any-return]


def _user_agent_once(client: Any) -> None:
    """Make ``client`` build its User-Agent header once per set of features, not twice per
    request: botocore assembles it from about 30 sanitized components (platform, versions,
    config, the request's feature IDs) at each request and again just before sending, a
    few percent of a rotation's CPU. The header is the same; only the building is kept."""
    creator = getattr(client, "_user_agent_creator", None)
    if creator is None:  # not a botocore client (the in-memory IAM twin)
        return
    build = creator.to_string
    built: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        features = frozenset(context.features) if context is not None else frozenset()
        found = built.get(features)
        if found is None:
            found = built[features] = build()
        return found

    creator.to_string = to_string


class Aws:
    """Opens aioboto3 clients that share one session and rotator's retry settings. Every
    IAM client it opens shares one ``Pacer``, ``iam_pacer`` (IAM throttles per account);
    an ``Aws`` for another account (``assume_role``) has its own.

    Rotator's own credentials are the session's (the standard AWS chain) until
    ``switch_to`` replaces them: from then on every client opened without explicit
    ``credentials`` — those already open too — signs its calls with the new ones. That is
    how a rotator that just rotated the access key it signs with goes on with the new key
    (``own_access_key_id`` tells which key that is)."""

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        max_attempts: int = 8,
        retry_mode: str = "standard",
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_connections: int = 10,
        max_iam_calls_per_second: float | None = None,
        botocore_session: AioSession | None = None,
        iam_pacer: Pacer | None = None,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self._retry = (max_attempts, retry_mode)
        self._timeouts = (connect_timeout, read_timeout)
        self._max_connections = max_connections
        self._config = BotoConfig(
            # total_max_attempts counts the first call too (botocore's max_attempts does not).
            retries={"total_max_attempts": max_attempts, "mode": retry_mode},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # botocore's default of 10 would cap the calls in flight below max_concurrency.
            max_pool_connections=max_connections,
        )
        # One pace for every IAM client of this account (IAM throttles per account).
        self.iam_pacer = iam_pacer if iam_pacer is not None else Pacer(max_iam_calls_per_second)
        if botocore_session is not None:
            self._session = aioboto3.Session(botocore_session=botocore_session, region_name=region)
        else:
            self._session = aioboto3.Session(profile_name=profile, region_name=region)
        core = self._session._session
        parsers = core.get_component("response_parser_factory")
        parsers.set_parser_defaults(timestamp_parser=timestamp)
        core._internal_components.register_component("endpoint_resolver", endpoint_resolver())
        self._own: Credentials | None = None  # set by ``switch_to``

    async def own_access_key_id(self) -> str | None:
        """The access key ID rotator's own calls are signed with now (after ``switch_to``,
        the new one); None without credentials. Not a secret."""
        if self._own is not None:
            return self._own.access_key_id
        with aws_errors("credentials"):
            found = await self._session.get_credentials()
            if found is None:
                return None
            frozen = await found.get_frozen_credentials()
        return str(frozen.access_key) if frozen.access_key else None

    def switch_to(self, credentials: Credentials) -> None:
        """Sign rotator's own calls with ``credentials`` from now on, in every client of
        this ``Aws`` that was opened without explicit credentials (already open or not)."""
        self._own = credentials

    def _sign_as_own(self, request: Any, **_: Any) -> None:
        """botocore's ``before-sign`` hook of rotator's own clients: after ``switch_to``,
        sign with the credentials switched to (a task's ``signing_as``, registered after
        this hook on a ``signing_client``, still wins)."""
        own = self._own
        if own is None:
            return
        signing = request.context.setdefault("signing", {})
        signing["request_credentials"] = AioCredentials(own.access_key_id, own.secret_access_key)

    async def assume_role(
        self,
        role_arn: str,
        *,
        session_name: str = "rotator",
        external_id: str | None = None,
        duration: timedelta = timedelta(hours=1),
        iam_rate: float | None = None,
    ) -> Aws:
        """An ``Aws`` acting as ``role_arn`` (another account's role), through this one.
        The role is assumed at once (an ``AccessDenied``, a missing role, fails here) and
        again, with this ``Aws``'s own credentials, before the credentials expire
        (botocore's refreshable credentials: from 15 minutes before the expiry). Its IAM
        calls have their own pace (that account's IAM quota is its own): ``iam_rate``
        requests per second, each spaced from the previous one (``per_account_rate``), or
        with None under this ``Aws``'s ceiling (``max_iam_calls_per_second``)."""
        kwargs: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": int(duration.total_seconds()),
        }
        if external_id is not None:
            kwargs["ExternalId"] = external_id

        async def fetch() -> dict[str, str]:
            async with self.client("sts") as sts:
                with aws_errors("AssumeRole", role=role_arn):
                    got = (await sts.assume_role(**kwargs))["Credentials"]
            expiry = got["Expiration"]
            return {
                "access_key": got["AccessKeyId"],
                "secret_key": got["SecretAccessKey"],
                "token": got["SessionToken"],
                "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry),
            }

        credentials = AioRefreshableCredentials.create_from_metadata(
            await fetch(), fetch, "assume-role"
        )
        core = AioSession()
        core._credentials = credentials  # a botocore session's credentials, refreshable
        return Aws(
            region=self.session_region,
            endpoint_url=self.endpoint_url,
            botocore_session=core,
            max_attempts=self._retry[0],
            retry_mode=self._retry[1],
            connect_timeout=self._timeouts[0],
            read_timeout=self._timeouts[1],
            max_connections=self._max_connections,
            iam_pacer=self._account_pacer(iam_rate),
        )

    def _account_pacer(self, iam_rate: float | None) -> Pacer:
        """A new pace for one account's IAM: ``iam_rate`` per second without a burst,
        each request spaced from when the previous one actually went; None: this
        ``Aws``'s ceiling, adapting to throttling as ``iam_pacer`` does."""
        if iam_rate is not None:
            return Pacer(iam_rate, burst_s=0.0)
        return Pacer(self.iam_pacer.ceiling)

    def limited(self, iam_rate: float | None) -> Aws:
        """This ``Aws`` (same session and credentials) with its IAM requests held to
        ``iam_rate`` per second, each spaced from the previous one (the hub's own account
        under ``per_account_rate``); None: this ``Aws`` itself, on its own pace."""
        if iam_rate is None:
            return self
        twin = copy.copy(self)
        twin.iam_pacer = self._account_pacer(iam_rate)
        return twin

    @property
    def session_region(self) -> str:
        """The region clients use: the setting, else the environment, else us-east-1."""
        return self.region or self._session.region_name or "us-east-1"

    @asynccontextmanager
    async def client(
        self,
        service: str,
        *,
        region: str | None = None,
        credentials: Credentials | None = None,
        retries: int | None = None,
    ) -> AsyncIterator[Any]:
        """An aioboto3 client for ``service``; closed when the block ends. ``retries`` is
        the total number of attempts per call (1: no SDK retry)."""
        kwargs: dict[str, Any] = {
            "region_name": region or self.session_region,
            "config": self._config,
        }
        if retries is not None:
            kwargs["config"] = self._config.merge(
                BotoConfig(retries={"total_max_attempts": retries, "mode": "standard"})
            )
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if credentials is not None:  # same session: its loaded service models are reused
            kwargs["aws_access_key_id"] = credentials.access_key_id
            kwargs["aws_secret_access_key"] = credentials.secret_access_key
        session = self._session
        async with session.client(service, **kwargs) as client:
            _user_agent_once(client)
            if credentials is None:
                client.meta.events.register(f"before-sign.{service}", self._sign_as_own)
            if service == "iam":
                self.iam_pacer.attach(client, "iam")
            yield client

    @asynccontextmanager
    async def signing_client(
        self, service: str, *, region: str | None = None, retries: int | None = None
    ) -> AsyncIterator[Any]:
        """One client that many tasks share, each signing its calls with the credentials
        it set with ``signing_as`` (else rotator's own): verifying new access keys without a
        new client — connector, SSL context and all — per key."""
        async with self.client(service, region=region, retries=retries) as client:
            client.meta.events.register(f"before-sign.{service}", _sign_as_caller)
            yield client


class Clients:
    """The clients of one session (a sweep, an operator command), opened on first use:
    one per (service, region), shared by every caller and task, all closed when the
    ``async with`` block ends. Asking outside the block raises ``RuntimeError``.

    ``async with Clients(aws) as clients: ssm = await clients.get("ssm", region=...)``
    """

    def __init__(self, aws: Aws) -> None:
        self._aws = aws
        self._stack: AsyncExitStack | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        # Held while a client is opened, so that tasks asking at once open it only once.
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("these clients are already open")
        self._stack = AsyncExitStack()
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._lock:  # not while another task is opening one
            stack, self._stack = self._stack, None
            self._clients.clear()
        if stack is not None:
            await stack.aclose()

    async def get(self, service: str, *, region: str | None = None) -> Any:
        """The open client for ``service`` in ``region`` (default: the session's region)."""
        key = (service, region or self._aws.session_region)
        client = self._clients.get(key)
        if client is not None:
            return client
        async with self._lock:
            if self._stack is None:
                raise RuntimeError(f"{service} client asked for outside its session's block")
            client = self._clients.get(key)
            if client is None:
                opened = self._aws.client(service, region=key[1])
                client = self._clients[key] = await self._stack.enter_async_context(opened)
        return client
