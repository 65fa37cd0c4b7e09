"""``rotator.pacing``: one self-adjusting pace for every IAM call of an account.

The unit tests drive a ``Pacer`` on a fake clock; the last two run real aioboto3 clients
against moto behind the fault proxy, which models IAM's per-account token bucket."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from rotator.aws import Aws, aws_errors
from rotator.pacing import FLOOR, Pacer
from tests.support.faults import FaultProxy


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_with_no_ceiling_nothing_waits_until_iam_throttles() -> None:
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    for _ in range(50):
        await pacer.acquire()
    assert t.slept == []
    assert pacer.rate is None


async def test_a_ceiling_spaces_calls_after_a_one_second_burst() -> None:
    t = FakeTime()
    pacer = Pacer(10.0, clock=t.clock, sleep=t.sleep)
    for _ in range(30):
        await pacer.acquire()
    # 30 calls at 10/s: the first ~10 go at once (the burst), the rest are spaced 0.1 s.
    assert 1.8 <= t.now - 100.0 <= 2.1
    assert all(s <= 0.1 + 1e-9 for s in t.slept)


async def test_without_a_burst_each_call_waits_from_when_the_previous_one_went() -> None:
    """``burst_s=0`` (``[accounts] per_account_rate``): no burst after idling, and a call
    woken late pushes the next one back (spaced from departures, not from a schedule)."""
    t = FakeTime()
    late = {2: 0.25}  # the event loop was busy: the third call's sleep ends 0.25 s late

    async def sleep(seconds: float) -> None:
        await t.sleep(seconds + late.pop(len(t.slept) + 1, 0.0))

    pacer = Pacer(10.0, clock=t.clock, sleep=sleep, burst_s=0.0)
    sent = []
    for _ in range(5):
        await pacer.acquire()
        sent.append(t.now)
    assert sent[1] - sent[0] == pytest.approx(0.1)  # no burst: the second call waits
    assert sent[2] - sent[1] == pytest.approx(0.35)  # woken late
    assert sent[3] - sent[2] == pytest.approx(0.1)  # nothing made up for the late one
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(sent))
    with pytest.raises(ValueError, match="negative"):
        Pacer(1.0, burst_s=-1)


async def test_a_throttle_cuts_the_rate_below_what_was_sent_and_answers_raise_it_again() -> None:
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    for _ in range(20):  # 20 calls within one second
        await pacer.acquire()
    pacer.on_answer(throttled=True)
    assert pacer.throttled == 1
    assert pacer.rate == pytest.approx(20 * 0.8)
    cut = pacer.rate
    pacer.on_answer(throttled=False)
    assert pacer.rate is not None and cut is not None and pacer.rate > cut
    for _ in range(1000):  # a throttle a second for 1,000 seconds
        t.now += 1.0
        pacer.on_answer(throttled=True)
    assert pacer.rate == FLOOR  # never stops altogether
    assert pacer.throttled == 1001


async def test_throttling_that_does_not_depend_on_the_rate_never_halves_what_iam_accepted() -> None:
    """IAM's own hiccups: one call in five throttled whatever the pace. The rate settles
    at no less than a third of the most IAM answered in one second, well above the floor (a
    cut per throttle alone would have brought it down to the floor)."""
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    for n in range(2000):
        await pacer.acquire()
        pacer.on_answer(throttled=n % 5 == 4)
        t.now += 0.01  # the answer's round trip
    assert pacer.rate is not None
    assert pacer.rate >= pacer._best / 3
    assert pacer.rate >= 4 * FLOOR


async def test_answers_never_raise_the_rate_above_the_ceiling() -> None:
    pacer = Pacer(5.0)
    for _ in range(100):
        pacer.on_answer(throttled=False)
    assert pacer.rate == 5.0


def test_a_ceiling_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)


@pytest.fixture
def quota(aws_env: str) -> Iterator[FaultProxy]:
    """moto behind a proxy that throttles IAM above 10 calls/s (burst 10)."""
    with FaultProxy(aws_env) as proxy:
        proxy.limit_iam(10.0)
        yield proxy


async def _hammer(aws: Aws, calls: int, workers: int, *, sdk_retries: bool = False) -> int:
    """``calls`` ListUsers calls from ``workers`` tasks over two clients (one of them
    without SDK retries, unless ``sdk_retries``); returns how many failed."""
    failures = 0
    async with aws.client("iam") as a, aws.client("iam", retries=None if sdk_retries else 1) as b:

        async def worker(n: int) -> None:
            nonlocal failures
            for i in range(n, calls, workers):
                try:
                    with aws_errors("ListUsers"):
                        await (a if i % 2 else b).list_users()
                except Exception:
                    failures += 1

        await asyncio.gather(*(worker(n) for n in range(workers)))
    return failures


async def test_a_shared_ceiling_keeps_every_client_under_iams_quota(quota: FaultProxy) -> None:
    # Well under the quota: an event loop slowed by a busy machine may send a few late
    # calls together.
    aws = Aws(endpoint_url=quota.url, max_iam_calls_per_second=6.0, max_connections=16)

    failures = await _hammer(aws, calls=40, workers=16)

    assert failures == 0
    assert quota.counts()["throttled"] == 0  # paced below the bucket: IAM never pushed back
    assert aws.iam_pacer.waited_s > 0


async def test_without_a_ceiling_the_pace_adapts_to_the_quota(quota: FaultProxy) -> None:
    aws = Aws(endpoint_url=quota.url, max_connections=16)

    failures = await _hammer(aws, calls=60, workers=16, sdk_retries=True)

    assert failures == 0
    throttled = quota.counts()["throttled"]
    assert 1 <= throttled <= 20  # IAM pushed back, and the pace followed it
    assert aws.iam_pacer.rate is not None and aws.iam_pacer.rate <= 15
