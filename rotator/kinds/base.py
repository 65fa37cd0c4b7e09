"""The credential-kind port: the only code that calls a kind's IAM APIs.

The engine drives every two-slot kind through the same protocol and knows nothing of IAM;
each kind module implements ``CredentialKind`` for its own calls and secret material. A
kind is registered in ``rotator.kinds.REGISTRY`` under the name the policy file uses.

IAM is reached through ``iam``, an aioboto3 IAM client or anything with the same methods
and response shapes (tests use an in-memory twin for what moto lacks). Kinds convert
botocore errors with ``rotator.aws.aws_errors`` so callers only see ``rotator.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from rotator.aws import Aws
from rotator.model import Credential, Holder, Kind, Status
from rotator.policy import Rule
from rotator.settings import VerifySettings
from rotator.sinks.base import SecretEntry, SecretSink

# An aioboto3 IAM client, or an object with the same methods and response shapes.
IamClient = Any


@dataclass(frozen=True, kw_only=True)
class KindContext:
    """What a kind needs to talk to AWS during one sweep."""

    iam: IamClient
    iam_once: IamClient  # the same, without SDK retries: for calls that are not idempotent
    aws: Aws
    account: str
    verify: VerifySettings
    sink: Callable[[Rule], SecretSink]  # the session's sink of a rule (``Sinks.for_rule``)


class CredentialKind(Protocol):
    """One kind of IAM credential. Every method is safe to call again after a crash."""

    kind: Kind
    per_user: bool  # held by IAM users (False: by the account, e.g. server certificates)
    # The IAM actions this kind calls, for `rotator iam-policy` (least privilege).
    permissions: tuple[str, ...]

    async def list(self, user: str, slot: str = "") -> list[Credential]:
        """The user's credentials of this kind (and slot), with last-used where IAM has it.
        Raises ``NoSuchEntity`` if the user is gone."""
        ...

    async def make_material(self, rule: Rule, user: str) -> SecretEntry | None:
        """New secret material rotator generates itself (keys, certificates), or None when
        IAM makes the secret on create. Stored pending *before* ``create`` is called."""
        ...

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        """Create the credential in IAM (uploading ``material`` if given) and return its
        entry with the ID IAM assigned and all secret fields. Raises ``LimitExceeded``."""
        ...

    def reusable(self, pending: SecretEntry) -> bool:
        """True if ``pending`` is material rotator made that a resumed create should use
        again (rather than make new): it was stored before IAM saw it and IAM holds no
        credential made from it. False for kinds whose secret IAM makes."""
        ...

    def matches(self, credential: Credential, pending: SecretEntry) -> bool:
        """True if ``credential`` is the one ``pending`` was (or was about to be) created as:
        how a resumed rotation recognises a create that happened before a crash."""
        ...

    async def verify(self, user: str, entry: SecretEntry) -> None:
        """Prove the new credential works as ``user``. Raises ``VerificationFailed``."""
        ...

    async def set_status(self, user: str, credential_id: str, status: Status) -> None:
        """Set a credential Active or Inactive. Idempotent."""
        ...

    async def delete(self, user: str, credential_id: str) -> None:
        """Delete a credential. Deleting one that is already gone is a no-op."""
        ...

    async def last_used(self, user: str, credential_id: str) -> datetime | None:
        """When the credential was last used, if IAM knows (None: never, or not tracked)."""
        ...

    async def disable(self, user: str, credential_id: str) -> None:
        """Take an unused credential out of service (deactivate it; a console password's
        login profile is deleted). Idempotent."""
        ...

    async def account_holders(self, account: str, rules: Sequence[Rule]) -> Sequence[Holder]:
        """For kinds held by the account rather than by users (server certificates): the
        holders the rules may select, with their credentials. [] for per-user kinds."""
        ...
