"""``rotator.pacing``: one self-adjusting pace for every IAM call of an account.

The unit tests drive a ``Pacer`` on a fake clock; the last two run real aioboto3 clients
against moto behind the fault proxy, which models IAM's per-account token bucket."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from rotator.aws import Aws, aws_errors
from rotator.pacing import CUT, FLOOR, Pacer
from tests.support import paced_sim
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


async def test_a_throttle_cuts_to_a_share_of_what_iam_accepted_and_answers_raise_it_again() -> None:
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    for _ in range(30):  # 30 calls within one second...
        await pacer.acquire()
    for _ in range(18):  # ...of which IAM accepted 18 before it pushed back
        pacer.on_answer(throttled=False)
    pacer.on_answer(throttled=True)
    assert pacer.throttled == 1
    assert pacer.rate == pytest.approx(18 * CUT)  # from what IAM accepted, not from the 30 sent
    cut = pacer.rate
    pacer.on_answer(throttled=False)
    assert pacer.rate is not None and cut is not None and pacer.rate > cut
    stuck = Pacer(clock=t.clock, sleep=t.sleep)
    for _ in range(1000):  # every call throttled, one a second for 1,000 seconds
        t.now += 1.0
        for paced in (pacer, stuck):
            await paced.acquire()
            paced.on_answer(throttled=True)
    assert stuck.rate == FLOOR  # never stops altogether
    assert stuck.throttled == 1000
    assert pacer.rate == pytest.approx(19 / 3)  # a third of the most IAM accepted in a second
    assert pacer.throttled == 1001


async def test_a_burst_of_throttled_answers_cuts_the_rate_once() -> None:
    """The answers to calls that went before the cut say nothing new: 20 of them throttled
    cut the rate once, not 20 times (0.9 ** 20 would leave an eighth of it)."""
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    for _ in range(40):
        await pacer.acquire()
    t.now += 0.03  # the round trip
    for _ in range(20):
        pacer.on_answer(throttled=False)
    pacer.on_answer(throttled=True)
    once = pacer.rate
    assert once == pytest.approx(20 * CUT)
    for _ in range(19):
        t.now += 0.001
        pacer.on_answer(throttled=True, sent_at=100.0)
    assert pacer.rate == once
    assert pacer.throttled == 20


async def test_a_call_sent_after_the_cut_and_throttled_cuts_from_a_new_measure_not_the_rate() -> (
    None
):
    """Throttled again after the cut: the rate is measured again from what IAM accepted
    over the last second (about its quota while the bucket is empty), so cuts do not
    compound: it stays at a share of that quota instead of sinking 10 % each time."""
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    for _ in range(20):  # a bucket of 20/s, empty: each second 20 calls accepted, 1 refused
        for _ in range(21):
            await pacer.acquire()
        for _ in range(20):
            pacer.on_answer(throttled=False)
        pacer.on_answer(throttled=True)
        t.now += 1.0
    assert pacer.throttled == 20
    assert pacer.rate is not None and 0.85 * 20 <= pacer.rate <= 20


async def test_answers_still_on_their_way_at_the_cut_raise_it_when_they_come() -> None:
    """At the start of a sweep every worker sends at once and IAM's throttling answers come
    back before the calls it accepted: the cut first counts half of what was sent, then
    each late answer to a call of that window adds to what IAM accepted."""
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    for _ in range(32):
        await pacer.acquire()
    t.now += 0.02
    for _ in range(12):  # the 12 throttled of the 32 answer first...
        pacer.on_answer(throttled=True)
    assert pacer.throttled == 12
    assert pacer.rate == pytest.approx(32 / 2 * CUT)
    t.now += 0.02
    for _ in range(20):  # ...then the 20 that IAM accepted
        pacer.on_answer(throttled=False)
    assert pacer.rate is not None and 20 * CUT <= pacer.rate <= 20


async def test_right_after_a_cut_calls_are_spaced_not_sent_in_a_burst() -> None:
    """A throttle means IAM's bucket is empty: the calls that follow the cut go one by one
    at the cut rate, not in a burst earned by the idle time before it."""
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    for _ in range(20):
        await pacer.acquire()
        pacer.on_answer(throttled=False)
    t.now += 5.0  # idle
    await pacer.acquire()
    pacer.on_answer(throttled=True)
    rate = pacer.rate
    assert rate is not None
    start = t.now
    for _ in range(10):
        await pacer.acquire()
    assert t.now - start == pytest.approx(9 / rate)


@pytest.mark.parametrize("quota", [20.0, 40.0])
async def test_with_no_ceiling_a_sweep_settles_at_the_rate_of_iams_token_bucket(
    quota: float,
) -> None:
    """A simulated sweep (32 workers, 200 users) against a token bucket of ``quota`` calls
    per second, on a fake clock: with no ceiling it reaches >= 95 % of the quota in useful
    calls, few calls throttled, and no rotation fails."""
    outcome, _ = await paced_sim.sweep(quota)
    assert outcome.failed == 0
    assert outcome.answered == 200 * 6
    assert outcome.share_of(quota) >= 0.95
    assert outcome.throttled <= 40


@pytest.mark.parametrize("quota", [20.0, 40.0])
async def test_with_the_quota_as_ceiling_a_sweep_is_never_throttled(quota: float) -> None:
    outcome, pacer = await paced_sim.sweep(quota, ceiling=quota)
    assert (outcome.failed, outcome.throttled) == (0, 0)
    assert outcome.share_of(quota) >= 0.97
    assert pacer.rate == quota


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
