"""IAM behind the kinds: the moto server over real HTTP (aioboto3), or the in-memory twin.

``backend`` yields a ``Backend`` with a ``KindContext`` for either; tests that only the twin
can run (moto lacks the calls, or does not enforce what IAM enforces) ask for ``memory``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from rotator.aws import Aws, Clients
from rotator.kinds import REGISTRY, CredentialKind, KindContext
from rotator.model import Kind
from rotator.settings import VerifySettings
from rotator.sinks import Sinks
from rotator.testing import MemoryAws, MemoryIam

VERIFY = VerifySettings(attempts=3, initial_delay=timedelta(milliseconds=50))


@dataclass
class Backend:
    """One IAM implementation, with the kinds bound to it and ways to look inside."""

    name: str
    iam: Any
    ctx: KindContext
    twin: MemoryIam | None = None

    def kind(self, kind: Kind) -> CredentialKind:
        return REGISTRY[kind].build(self.ctx)

    async def user(self, name: str, *, password: str | None = None) -> None:
        await self.iam.create_user(UserName=name)
        if password is not None:
            await self.iam.create_login_profile(UserName=name, Password=password)

    def password_of(self, user: str) -> str | None:
        """The console password IAM holds for ``user`` (None: no login profile)."""
        if self.twin is not None:
            profile = self.twin.users[user].profile
            return profile.password if profile else None
        return moto_user(user).password  # type: ignore[no-any-return]

    def use_password(self, user: str, at: datetime) -> None:
        if self.twin is not None:
            self.twin.use_password(user, at)
        else:
            moto_user(user).password_last_used = at


def moto_user(name: str) -> Any:
    """The moto server's record of a user (the server runs in this process)."""
    from moto.iam.models import iam_backends

    return iam_backends["123456789012"]["aws"].users[name]


async def _moto(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    request.getfixturevalue("aws_env")
    aws = Aws()
    async with (
        aws.client("iam") as iam,
        aws.client("iam", retries=1) as once,
        Clients(aws) as clients,
    ):
        ctx = KindContext(
            iam=iam,
            iam_once=once,
            aws=aws,
            account="123456789012",
            verify=VERIFY,
            sink=Sinks(clients).for_rule,
        )
        yield Backend(name="moto", iam=iam, ctx=ctx)


async def _memory() -> AsyncIterator[Backend]:
    twin = MemoryIam()
    aws = MemoryAws(twin)
    async with Clients(aws) as clients:
        ctx = KindContext(
            iam=twin,
            iam_once=twin,
            aws=aws,
            account=twin.account,
            verify=VERIFY,
            sink=Sinks(clients).for_rule,
        )
        yield Backend(name="memory", iam=twin, ctx=ctx, twin=twin)


@pytest.fixture(params=["moto", "memory"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each IAM implementation in turn."""
    opened = _moto(request) if request.param == "moto" else _memory()
    async for found in opened:
        yield found


@pytest.fixture
async def memory() -> AsyncIterator[Backend]:
    """The in-memory twin only."""
    async for found in _memory():
        yield found
