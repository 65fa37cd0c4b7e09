"""Access-key verification across regions, with scripted regional STS clients: a key must
answer in every ``[verify] regions`` ``consecutive`` times in a row; a refusal resets the
run; a region gives up after ``attempts`` failures or when the time limit would pass; a
wrong identity anywhere is never promoted. Also: the session opens one shared signing
client per region, and each goes to that region's STS endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import SecretStr

from rotator.aws import Aws, signing_credentials
from rotator.errors import VerificationFailed, WrongIdentity
from rotator.journal import MemoryJournal
from rotator.kinds.access_key import SECRET_ACCESS_KEY, AccessKeys
from rotator.kinds.base import KindContext
from rotator.model import Kind, utcnow
from rotator.rotation.session import open_session
from rotator.settings import Config, VerifySettings
from rotator.sinks.base import SecretEntry
from rotator.testing import MemoryAws, MemoryIam

ACCOUNT = "123456789012"
ARN = f"arn:aws:iam::{ACCOUNT}:user/ci/app"
NEW_KEY = "AKIANEWKEY0000000001"


class ScriptedSts:
    """One region's STS: answers ``script`` in order ('ok', 'no' = InvalidClientTokenId,
    'slow' = Throttling, 'other' = another user's ARN), then keeps answering its last
    entry."""

    def __init__(self, script: str) -> None:
        self.script = script.split()
        self.calls = 0
        self.signers: list[str] = []

    async def get_caller_identity(self) -> dict[str, Any]:
        creds = signing_credentials()
        self.signers.append(creds.access_key_id if creds else "")
        answer = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if answer == "no":
            error = {"Code": "InvalidClientTokenId", "Message": "The token is invalid."}
            raise ClientError({"Error": error}, "GetCallerIdentity")
        if answer == "slow":
            error = {"Code": "Throttling", "Message": "Rate exceeded"}
            raise ClientError({"Error": error}, "GetCallerIdentity")
        user = "other" if answer == "other" else "app"
        return {"Arn": f"arn:aws:iam::{ACCOUNT}:user/ci/{user}", "Account": ACCOUNT}


def kind(
    regions: dict[str, ScriptedSts],
    *,
    attempts: int = 5,
    consecutive: int = 2,
    initial_delay: int = 0,
    max_delay: int = 0,
) -> AccessKeys:
    verify = VerifySettings(
        attempts=attempts,
        initial_delay=timedelta(seconds=initial_delay),
        max_delay=timedelta(seconds=max_delay),
        regions=tuple(regions),
        consecutive=consecutive,
    )
    iam = MemoryIam()
    ctx = KindContext(
        iam=iam,
        iam_once=iam,
        aws=MemoryAws(iam),
        account=ACCOUNT,
        verify=verify,
        sink=lambda rule: pytest.fail("no sink here"),
        signed_sts=regions,
    )
    return AccessKeys(ctx)


def entry() -> SecretEntry:
    return SecretEntry(
        kind=Kind.ACCESS_KEY,
        credential_id=NEW_KEY,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        secret={SECRET_ACCESS_KEY: SecretStr("s3cr3t-never-logged")},
    )


async def test_every_region_must_answer_consecutive_times_in_a_row() -> None:
    regions = {
        "us-east-1": ScriptedSts("ok"),
        "eu-west-1": ScriptedSts("no no ok no ok ok"),
        "ap-southeast-2": ScriptedSts("no ok ok"),
    }
    await kind(regions, attempts=5, consecutive=2).verify("app", entry())
    calls = {name: sts.calls for name, sts in regions.items()}
    # A refusal after a success starts the run again.
    assert calls == {"us-east-1": 2, "eu-west-1": 6, "ap-southeast-2": 3}
    assert all(set(sts.signers) == {NEW_KEY} for sts in regions.values())


async def test_throttling_costs_an_attempt_but_does_not_break_the_run() -> None:
    """A throttled call says nothing about the key: the run goes on after it."""
    regions = {"eu-west-1": ScriptedSts("ok slow ok"), "us-east-1": ScriptedSts("ok no ok ok")}
    await kind(regions, attempts=3).verify("app", entry())
    assert [sts.calls for sts in regions.values()] == [3, 4]
    throttled = {"eu-west-1": ScriptedSts("ok slow slow")}
    with pytest.raises(
        VerificationFailed, match=r"eu-west-1: 2 attempts failed \(last: Throttling\)"
    ):
        await kind(throttled, attempts=2).verify("app", entry())


async def test_consecutive_three_asks_three_answers_even_when_all_is_well() -> None:
    regions = {"us-east-1": ScriptedSts("ok"), "eu-central-1": ScriptedSts("ok")}
    await kind(regions, consecutive=3).verify("app", entry())
    assert [sts.calls for sts in regions.values()] == [3, 3]


async def test_a_region_that_never_accepts_fails_verification_and_names_itself() -> None:
    regions = {"us-east-1": ScriptedSts("ok"), "eu-west-1": ScriptedSts("no")}
    with pytest.raises(VerificationFailed) as caught:
        await kind(regions, attempts=3).verify("app", entry())
    assert not isinstance(caught.value, WrongIdentity)
    assert "eu-west-1: 3 attempts failed (last: InvalidClientTokenId)" in str(caught.value)
    assert "us-east-1" not in str(caught.value)
    assert "s3cr3t" not in str(caught.value) and "s3cr3t" not in repr(caught.value)
    assert regions["eu-west-1"].calls == 3


async def test_a_flapping_region_gives_up_after_its_failures_not_its_calls() -> None:
    regions = {"eu-west-1": ScriptedSts("ok no ok no ok no ok no")}
    with pytest.raises(VerificationFailed, match="eu-west-1: 4 attempts failed"):
        await kind(regions, attempts=4).verify("app", entry())
    assert regions["eu-west-1"].calls == 8


async def test_the_time_limit_stops_a_region_that_would_wait_past_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """attempts x max_delay bounds the whole verification: a wait that would pass it is
    not taken."""
    clock = iter_clock()
    monkeypatch.setattr("rotator.kinds.access_key.monotonic", lambda: next(clock))
    monkeypatch.setattr("rotator.kinds.access_key.pause", no_pause)
    regions = {"eu-west-1": ScriptedSts("no")}
    with pytest.raises(VerificationFailed, match="eu-west-1: 0 of 2 answers in a row when the"):
        await kind(regions, attempts=30, initial_delay=1, max_delay=1).verify("app", entry())
    # The limit is 30 x 1 s; the clock moves 5 s a read: a handful of calls, not 30.
    assert 1 <= regions["eu-west-1"].calls <= 7


async def test_a_wrong_identity_in_any_region_is_never_promoted() -> None:
    regions = {"us-east-1": ScriptedSts("ok"), "eu-west-1": ScriptedSts("no other")}
    with pytest.raises(WrongIdentity, match="in eu-west-1"):
        await kind(regions).verify("app", entry())


def iter_clock() -> Iterator[float]:
    """A monotonic clock that moves 5 s each time it is read."""
    now = 0.0
    while True:
        yield now
        now += 5.0


async def no_pause(seconds: float) -> None:
    return None


async def test_the_session_shares_one_signing_client_per_region() -> None:
    rule = {
        "name": "ci",
        "kind": "access-key",
        "sink": {"type": "memory", "name": "{account}/{user}/{kind}"},
    }
    regional = Config(
        rules=[rule],  # type: ignore[list-item]
        verify=VerifySettings(regions=("us-east-1", "eu-west-1")),
    )
    plain = Config(rules=[rule])  # type: ignore[list-item]
    aws = MemoryAws(MemoryIam(), region="ap-south-1")
    for config, expected in ((regional, ["us-east-1", "eu-west-1"]), (plain, ["ap-south-1"])):
        async with open_session(
            aws=aws, journal=MemoryJournal(), config=config, clock=utcnow, dry_run=False
        ) as session:
            assert list(session.context.signed_sts) == expected
            assert session.context.verify_regions == tuple(expected)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2"])
async def test_each_signing_client_goes_to_its_regional_sts_endpoint(
    region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_STS_REGIONAL_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    async with Aws(region="us-east-1").signing_client("sts", region=region, retries=1) as sts:
        assert sts.meta.endpoint_url == f"https://sts.{region}.amazonaws.com"
