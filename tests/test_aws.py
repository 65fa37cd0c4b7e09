"""``rotator.aws``: following IAM's ``Marker`` paging, converting its errors, and the
``Clients`` pool a session opens its sinks' clients from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.loaders import create_loader
from botocore.regions import EndpointResolver
from botocore.useragent import UserAgentString
from botocore.utils import parse_timestamp

from rotator.aws import (
    SERVICES,
    Aws,
    Clients,
    Credentials,
    all_pages,
    endpoint_resolver,
    signing_as,
    timestamp,
)
from rotator.errors import NoSuchEntity
from rotator.kinds.access_key import is_user_arn
from tests.support.moto import MotoSandbox


async def test_all_pages_follows_the_marker_to_the_last_page() -> None:
    items = [{"n": n} for n in range(7)]
    asked: list[dict[str, Any]] = []

    async def list_things(**kwargs: Any) -> dict[str, Any]:
        asked.append(kwargs)
        start = int(kwargs.get("Marker", 0))
        end = min(start + 3, len(items))
        page: dict[str, Any] = {"Things": items[start:end], "IsTruncated": end < len(items)}
        if page["IsTruncated"]:
            page["Marker"] = str(end)
        return page

    got = await all_pages(list_things, "Things", "ListThings", UserName="alice")

    assert got == items
    assert asked == [
        {"UserName": "alice"},
        {"UserName": "alice", "Marker": "3"},
        {"UserName": "alice", "Marker": "6"},
    ]


async def test_all_pages_converts_an_error_naming_the_call_and_the_ids() -> None:
    async def list_things(**kwargs: Any) -> dict[str, Any]:
        error = {"Error": {"Code": "NoSuchEntity", "Message": "The user cannot be found."}}
        raise ClientError(error, "ListThings")  # type: ignore[arg-type]

    with pytest.raises(NoSuchEntity) as caught:
        await all_pages(list_things, "Things", "ListThings", {"user": "alice"}, UserName="alice")

    assert "ListThings" in str(caught.value)
    assert "alice" in str(caught.value)


class CountingAws(Aws):
    """An ``Aws`` whose clients are plain objects; it records each one opened and closed.
    Opening yields to the event loop, as aioboto3's does, so racing tasks interleave."""

    def __init__(self) -> None:
        super().__init__(region="us-east-1")
        self.opened: list[tuple[str, str | None]] = []
        self.closed: list[tuple[str, str | None]] = []

    @asynccontextmanager
    async def client(
        self,
        service: str,
        *,
        region: str | None = None,
        credentials: Credentials | None = None,
        retries: int | None = None,
    ) -> AsyncIterator[Any]:
        await asyncio.sleep(0)
        self.opened.append((service, region))
        try:
            yield object()
        finally:
            self.closed.append((service, region))


async def test_clients_opens_one_client_per_service_and_region_on_first_use() -> None:
    aws = CountingAws()
    async with Clients(aws) as clients:
        assert aws.opened == [], "nothing is opened before it is asked for"
        ssm = await clients.get("ssm")
        assert await clients.get("ssm") is ssm
        assert await clients.get("ssm", region="us-east-1") is ssm, "the default region"
        assert await clients.get("ssm", region="eu-west-1") is not ssm
        assert await clients.get("secretsmanager") is not ssm
        assert aws.closed == []

    assert sorted(aws.opened) == [
        ("secretsmanager", "us-east-1"),
        ("ssm", "eu-west-1"),
        ("ssm", "us-east-1"),
    ]
    assert sorted(aws.closed) == sorted(aws.opened), "every client is closed with the block"


async def test_clients_asked_for_at_once_by_many_tasks_are_opened_once() -> None:
    aws = CountingAws()
    async with Clients(aws) as clients:
        got = await asyncio.gather(*(clients.get("ssm") for _ in range(20)))

    assert len({id(c) for c in got}) == 1
    assert aws.opened == [("ssm", "us-east-1")]


async def test_clients_refuse_to_open_outside_their_block() -> None:
    aws = CountingAws()
    clients = Clients(aws)
    with pytest.raises(RuntimeError, match="outside"):
        await clients.get("ssm")
    async with clients:
        await clients.get("ssm")
    with pytest.raises(RuntimeError, match="outside"):
        await clients.get("ssm")

    assert aws.opened == aws.closed == [("ssm", "us-east-1")]


async def test_one_signing_client_signs_each_tasks_calls_with_that_tasks_key(
    sandbox: MotoSandbox,
) -> None:
    """Verifying many new keys at once shares one STS client: each task's call is signed
    with its own key (moto answers as that key's user), and the caller's own identity is
    used outside ``signing_as``."""
    users = [f"ci-{i}" for i in range(6)]
    keys = {u: sandbox.create_user(u, keys=1)[0] for u in users}

    async def whoami(sts: Any, user: str) -> str:
        key = keys[user]
        with signing_as(
            Credentials(access_key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"])
        ):
            await asyncio.sleep(0)  # let the other tasks interleave
            return str((await sts.get_caller_identity())["Arn"])

    async with Aws().signing_client("sts", retries=1) as sts:
        arns = await asyncio.gather(*(whoami(sts, u) for u in users))
        own = (await sts.get_caller_identity())["Arn"]
    assert [arn.rsplit("/", 1)[-1] for arn in arns] == users
    assert not own.endswith(tuple(f"/{u}" for u in users))


@pytest.mark.parametrize(
    ("arn", "ok"),
    [
        ("arn:aws:iam::123456789012:user/ci-app", True),
        ("arn:aws:iam::123456789012:user/ci/deep/ci-app", True),
        ("arn:aws-cn:iam::123456789012:user/ci-app", True),
        ("arn:aws:iam::210987654321:user/ci-app", False),
        ("arn:aws:iam::123456789012:user/ci-app2", False),
        ("arn:aws:iam::123456789012:role/ci-app", False),
        ("arn:aws:sts::123456789012:assumed-role/x/ci-app", False),
        ("not-an-arn", False),
    ],
)
def test_a_new_key_must_authenticate_as_its_own_user(arn: str, ok: bool) -> None:
    assert is_user_arn(arn, "123456789012", "ci-app") is ok


async def test_a_client_builds_its_user_agent_once_not_per_request(
    sandbox: MotoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's User-Agent header is assembled once per client (and set of features),
    and every request still carries the header botocore would have built."""
    built: list[str] = []
    build = UserAgentString.to_string

    def counted(self: UserAgentString) -> str:
        built.append(build(self))
        return built[-1]

    monkeypatch.setattr(UserAgentString, "to_string", counted)
    sent: list[str] = []

    def record(request: Any, **_: Any) -> None:
        sent.append(request.headers["User-Agent"].decode())

    async with Aws().client("iam") as iam:
        iam.meta.events.register("before-send.iam", record)
        for _ in range(6):
            await iam.list_users()

    assert len(sent) == 6
    assert len(set(sent)) == 1
    assert set(sent) <= set(built)
    assert "md/Botocore#" in sent[0]
    assert len(built) <= 2, built  # botocore's own: twice for each of the 6 requests


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-03T07:00:00Z",
        "2026-12-03T07:00:00.123456Z",
        "2026-12-03T09:00:00.123+02:00",
        "2026-12-03T07:00:00",  # no zone: botocore's own parse
        "Thu, 03 Dec 2026 07:00:00 GMT",
        1764745200,
        "1764745200",
    ],
)
def test_timestamps_parse_to_the_instant_botocore_reads(value: object) -> None:
    assert timestamp(value) == parse_timestamp(value)
    assert (timestamp(value).tzinfo is None) == (parse_timestamp(value).tzinfo is None)


async def test_clients_read_aws_timestamps_as_aware_utc_datetimes_sharing_one_zone(
    sandbox: MotoSandbox,
) -> None:
    for n in range(3):
        sandbox.create_user(f"ts-{n}", keys=1)
    async with Aws().client("iam") as iam:
        users = (await iam.list_users())["Users"]
        keys = (await iam.list_access_keys(UserName="ts-0"))["AccessKeyMetadata"]
    created = [u["CreateDate"] for u in users] + [k["CreateDate"] for k in keys]
    assert {d.tzinfo for d in created} == {UTC}
    assert all(abs(d - datetime.now(UTC)) < timedelta(minutes=5) for d in created)


def answer(resolver: EndpointResolver, *args: Any) -> object:
    """What ``construct_endpoint`` returns, or the class of the error it raises."""
    try:
        return resolver.construct_endpoint(*args)
    except Exception as exc:  # a variant a partition does not offer: the same error
        return type(exc)


def test_the_shared_endpoint_data_resolves_rotators_services_as_botocores_own_does() -> None:
    """Every session shares one resolver over the endpoint data of ``SERVICES`` only; for
    those services, in every partition's regions (and the FIPS/dual-stack variants), it
    answers exactly as botocore's resolver over the whole file."""
    loader = create_loader()
    whole = EndpointResolver(loader.load_data("endpoints"))
    lean = endpoint_resolver()
    assert endpoint_resolver() is lean, "one for the process"
    checked = 0
    for partition in whole.get_available_partitions():
        regions = whole.get_available_endpoints("sts", partition) or ["us-east-1"]
        for service in SERVICES:
            for region in regions:
                for variant in ([], ["fips"], ["dualstack"]):
                    args = (service, region, partition, variant)
                    assert answer(lean, *args) == answer(whole, *args), args
                    checked += 1
    assert checked > 500


async def test_a_session_resolves_endpoints_from_the_shared_lean_data() -> None:
    aws = Aws(region="eu-west-1")
    core = aws._session._session
    assert core._get_internal_component("endpoint_resolver") is endpoint_resolver()
    async with aws.client("iam") as iam, aws.client("sts") as sts:
        assert iam.meta.endpoint_url == "https://iam.amazonaws.com"
        assert sts.meta.endpoint_url == "https://sts.eu-west-1.amazonaws.com"
