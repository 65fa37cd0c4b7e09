"""The state of the in-memory IAM twin and what every part of it shares: the records it
keeps, IAM's errors as botocore ``ClientError``s, call counting and injected faults."""

from __future__ import annotations

import secrets
import string
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from rotator.model import utcnow

DEFAULT_ACCOUNT = "123456789012"
_ID_CHARS = string.ascii_uppercase + string.digits


def random_id(prefix: str, length: int = 16) -> str:
    """An IAM-style identifier: ``prefix`` and ``length`` upper-case letters and digits."""
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def random_secret(length: int = 40) -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def client_error(operation: str, code: str, message: str, status: int = 400) -> ClientError:
    """The ``ClientError`` botocore raises for IAM's error ``code`` (query protocol)."""
    side = "Receiver" if status >= 500 else "Sender"
    return ClientError(
        {
            "Error": {"Type": side, "Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": random_id("", 32)},
        },
        operation,
    )


def ok(body: dict[str, Any]) -> dict[str, Any]:
    """A successful response: ``body`` plus the metadata botocore adds."""
    return {**body, "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": random_id("", 32)}}


def page(items: Sequence[Any], marker: str | None, max_items: int | None) -> tuple[list[Any], Any]:
    """One page of ``items`` and the paging fields IAM answers with."""
    start = int(marker) if marker else 0
    size = max_items or 100
    chunk = list(items[start : start + size])
    end = start + len(chunk)
    if end < len(items):
        return chunk, {"IsTruncated": True, "Marker": str(end)}
    return chunk, {"IsTruncated": False}


@dataclass
class AccessKey:
    key_id: str
    secret: str
    status: str
    created: datetime
    last_used: datetime | None = None
    last_service: str = "N/A"
    last_region: str = "N/A"


@dataclass
class LoginProfile:
    password: str
    created: datetime
    changed: datetime
    reset_required: bool
    history: list[str] = field(default_factory=list)  # newest last, for reuse prevention


@dataclass
class SshKey:
    key_id: str
    body: str
    fingerprint: str
    status: str
    uploaded: datetime


@dataclass
class ServiceCredential:
    credential_id: str
    service: str
    service_user: str
    password: str
    status: str
    created: datetime


@dataclass
class SigningCertificate:
    certificate_id: str
    body: str
    status: str
    uploaded: datetime


@dataclass
class User:
    name: str
    path: str
    user_id: str
    arn: str
    created: datetime
    tags: dict[str, str] = field(default_factory=dict)
    keys: list[AccessKey] = field(default_factory=list)
    profile: LoginProfile | None = None
    password_last_used: datetime | None = None
    ssh_keys: list[SshKey] = field(default_factory=list)
    service_credentials: list[ServiceCredential] = field(default_factory=list)
    signing_certificates: list[SigningCertificate] = field(default_factory=list)
    mfa_active: bool = False


@dataclass
class ServerCertificate:
    name: str
    certificate_id: str
    path: str
    uploaded: datetime
    expiration: datetime  # what the metadata says (IAM: the body's notAfter)
    body: str = ""
    chain: str | None = None
    attached_to: str | None = None  # the load balancer using it: IAM refuses to delete it


@dataclass
class OidcProvider:
    url: str  # as IAM holds it: no scheme
    thumbprints: list[str]
    client_ids: list[str]
    created: datetime
    tags: dict[str, str] = field(default_factory=dict)


class State:
    """What the twin holds, and the plumbing every API call goes through."""

    def __init__(
        self, *, account: str = DEFAULT_ACCOUNT, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.account = account
        self.clock = clock
        self.users: dict[str, User] = {}
        self.password_policy: dict[str, Any] | None = None
        self.server_certificates: dict[str, ServerCertificate] = {}  # by name
        self.oidc_providers: dict[str, OidcProvider] = {}  # by ARN
        self.page_size = 100  # IAM's default MaxItems (tests make it small to page)
        self.calls: Counter[str] = Counter()  # every API call, by IAM action name
        self._faults: dict[str, deque[ClientError]] = {}

    def fail_next(
        self, action: str, code: str = "Throttling", *, status: int = 400, times: int = 1
    ) -> None:
        """Make the next ``times`` calls of ``action`` raise IAM's error ``code``."""
        queue = self._faults.setdefault(action, deque())
        for _ in range(times):
            queue.append(client_error(action, code, f"injected {code}", status))

    def _call(self, action: str) -> None:
        """Count one call of ``action``; raise a fault injected for it, if any."""
        self.calls[action] += 1
        queue = self._faults.get(action)
        if queue:
            raise queue.popleft()

    def _user(self, action: str, name: str) -> User:
        found = self.users.get(name)
        if found is None:
            raise client_error(
                action, "NoSuchEntity", f"The user with name {name} cannot be found.", 404
            )
        return found
