"""``MemoryAws``: an ``Aws`` whose IAM is a ``MemoryIam`` and whose STS knows its keys.

This is the seam that lets the whole engine run against the in-memory twin: ``Engine``
opens every client through ``Aws.client``, so ``Engine(aws=MemoryAws(twin), ...)`` sweeps
the twin with no other change. STS answers ``GetCallerIdentity`` for rotator's own
principal, and for an access key the twin holds (as its user; the call counts as the key's
use), or ``InvalidClientTokenId`` for any other key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from rotator.aws import Aws, Credentials, signing_credentials
from rotator.testing.memory_iam import MemoryIam
from rotator.testing.memory_state import client_error, ok


class MemorySts:
    """``GetCallerIdentity`` as the twin's account sees ``credentials`` (None: rotator)."""

    def __init__(self, iam: MemoryIam, credentials: Credentials | None) -> None:
        self._iam = iam
        self._credentials = credentials

    async def get_caller_identity(self) -> dict[str, Any]:
        iam, creds = self._iam, self._credentials
        if creds is None:
            arn = f"arn:aws:iam::{iam.account}:user/rotator"
            return ok({"UserId": "AIDAROTATOR", "Account": iam.account, "Arn": arn})
        for user in iam.users.values():
            for key in user.keys:
                if key.key_id != creds.access_key_id or key.status != "Active":
                    continue
                if key.secret != creds.secret_access_key:
                    raise client_error(
                        "GetCallerIdentity", "SignatureDoesNotMatch", "signature mismatch", 403
                    )
                iam.use_access_key(key.key_id, service="sts")
                return ok({"UserId": user.user_id, "Account": iam.account, "Arn": user.arn})
        raise client_error(
            "GetCallerIdentity", "InvalidClientTokenId", "The security token is invalid.", 403
        )


class MemoryAws(Aws):
    """Clients for the twin: ``iam`` is ``iam`` itself, ``sts`` a ``MemorySts``."""

    def __init__(self, iam: MemoryIam, *, region: str = "us-east-1") -> None:
        super().__init__(region=region)
        self.iam = iam

    async def own_access_key_id(self) -> str | None:
        """The key ``switch_to`` set, if any: the twin's own principal (``user/rotator``)
        signs with no access key of the twin, and no credential chain is asked."""
        return self._own.access_key_id if self._own is not None else None

    @asynccontextmanager
    async def client(
        self,
        service: str,
        *,
        region: str | None = None,
        credentials: Credentials | None = None,
        retries: int | None = None,
    ) -> AsyncIterator[Any]:
        """The twin for ``iam`` and ``sts``; other services are not simulated."""
        if service == "iam":
            yield self.iam
        elif service == "sts":
            yield MemorySts(self.iam, credentials)
        else:
            raise NotImplementedError(f"MemoryAws simulates iam and sts, not {service}")

    @asynccontextmanager
    async def signing_client(
        self, service: str, *, region: str | None = None, retries: int | None = None
    ) -> AsyncIterator[Any]:
        """STS that answers as the calling task's ``signing_as`` credentials."""
        if service != "sts":
            raise NotImplementedError(f"MemoryAws signs as a caller for sts, not {service}")
        yield _SignedSts(self.iam)


class _SignedSts:
    """``MemorySts`` for whichever credentials the calling task signs with."""

    def __init__(self, iam: MemoryIam) -> None:
        self._iam = iam

    async def get_caller_identity(self) -> dict[str, Any]:
        return await MemorySts(self._iam, signing_credentials()).get_caller_identity()
