"""One pace for every IAM call of an account: a shared, self-adjusting rate limiter.

IAM throttles per account, not per client, and a sweep has many clients (with and without
SDK retries, per task). botocore's ``adaptive`` retry mode keeps its token bucket per
client, so each of them discovers the limit on its own by being throttled. ``Pacer`` is
one bucket that every IAM client of an ``Aws`` shares (wired in as a ``before-send``
hook): calls are spaced at the current rate; a throttling answer cuts the rate
(multiplicatively, from what was actually sent over the last second at most) and remembers
the rate that was throttled; answered calls raise it again, quickly back towards that rate
and then slowly past it (probing, as TCP CUBIC does), never above the configured ceiling.
With no ceiling the pacer lets everything through until IAM first pushes back, and then
keeps close under the rate that IAM accepts.

``burst_s=0`` makes the ceiling a strict one (``[accounts] per_account_rate``): no burst
after an idle spell, and each call goes ``1 / rate`` after the previous one *actually*
went, in arrival order, even when the event loop woke that one late.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

# After a throttle, send at this share of what was sent over the last second.
BACKOFF = 0.8
# Each answer closes this share of the gap to the last throttled rate...
RECOVER = 0.05
# ...and, once within 5 % of it, probes past it by this many calls/s per second.
PROBE = 2.0
# The pacer never goes below this rate (calls per second), however often IAM throttles.
FLOOR = 0.5
# The burst allowed after an idle spell, in seconds' worth of calls at the current rate.
BURST_S = 1.0
WINDOW_S = 1.0
THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
    }
)


class Pacer:
    """Spaces calls at ``rate`` per second and adapts ``rate`` to throttling.

    ``ceiling`` (calls per second, or None for no ceiling) is the most it ever allows:
    ``max_iam_calls_per_second``, headroom left for other tools. ``burst_s``: the burst
    allowed after an idle spell, in seconds' worth of calls; 0 spaces every call from the
    previous one's departure. Not thread-safe: one event loop uses it (every caller awaits
    ``acquire`` on that loop).
    """

    def __init__(
        self,
        ceiling: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
        burst_s: float = BURST_S,
    ) -> None:
        if ceiling is not None and ceiling <= 0:
            raise ValueError("ceiling must be positive")
        if burst_s < 0:
            raise ValueError("burst_s must not be negative")
        self._burst_s = burst_s
        self._in_turn = asyncio.Lock()  # burst_s = 0: calls go one after another
        self.ceiling = ceiling
        self._rate: float | None = ceiling
        self._limit: float | None = None  # the rate IAM last throttled
        self._answered: deque[float] = deque()  # answers (not throttled) in the last WINDOW_S
        self._best = 0  # the most answers IAM gave in one WINDOW_S so far
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0  # when the next call may go
        self._sent: deque[float] = deque()  # send times within the last WINDOW_S
        self.throttled = 0  # throttling answers seen
        self.waited_s = 0.0  # total time callers spent waiting for their turn

    @property
    def rate(self) -> float | None:
        """The current rate in calls per second (None: not limited)."""
        return self._rate

    def sent_last_second(self) -> int:
        now = self._clock()
        while self._sent and self._sent[0] <= now - WINDOW_S:
            self._sent.popleft()
        return len(self._sent)

    async def acquire(self) -> None:
        """Wait for this call's turn (returns at once when not limited)."""
        if self._burst_s == 0 and self._rate is not None:
            await self._acquire_in_turn()
            return
        now = self._clock()
        rate = self._rate
        if rate is not None:
            # Claim a slot before sleeping: the next caller queues behind this one.
            start = max(self._next, now - self._burst_s)
            self._next = start + 1.0 / rate
            if start > now:
                self.waited_s += start - now
                await self._sleep(start - now)
                now = self._clock()
        self._sent.append(now)
        self.sent_last_second()  # trims the window

    async def _acquire_in_turn(self) -> None:
        """No burst: wait until ``1 / rate`` after the previous call went (the rate as
        it is when this call goes, lowered by throttling meanwhile or not)."""
        async with self._in_turn:
            now = self._clock()
            if now < self._next:
                self.waited_s += self._next - now
                await self._sleep(self._next - now)
                now = self._clock()
            rate = self._rate
            self._next = now + (1.0 / rate if rate is not None else 0.0)
            self._sent.append(now)
            self.sent_last_second()  # trims the window

    def on_answer(self, *, throttled: bool) -> None:
        """Adjust the rate for one answer from IAM."""
        now = self._clock()
        if throttled:
            self.throttled += 1
            # Never below a third of what IAM has accepted: throttling that does not depend
            # on the rate (IAM's own hiccups) must not slow a sweep down to a crawl.
            floor = max(FLOOR, self._best / 3)
            seen = max(float(self.sent_last_second()), FLOOR)
            current = min(self._rate, seen) if self._rate is not None else seen
            self._limit = max(current, floor)
            self._rate = max(floor, current * BACKOFF)
            return
        self._answered.append(now)
        while self._answered and self._answered[0] <= now - WINDOW_S:
            self._answered.popleft()
        self._best = max(self._best, len(self._answered))
        rate = self._rate
        if rate is None:
            return
        limit = self._limit if self._limit is not None else rate
        if rate < 0.95 * limit:
            raised = rate + (limit - rate) * RECOVER
        else:  # PROBE calls/s per second, spread over the ~rate answers of a second
            raised = rate + PROBE / max(rate, 1.0)
        self._rate = raised if self.ceiling is None else min(raised, self.ceiling)

    # botocore event hooks ------------------------------------------------------------

    async def before_send(self, **_: Any) -> None:
        """``before-send``: wait for the turn. Returns None, so the request is sent."""
        await self.acquire()

    def needs_retry(self, response: Any = None, **_: Any) -> None:
        """``needs-retry``: see each answer (before botocore decides to retry it)."""
        if response is None:  # no answer: a connection error, not IAM pushing back
            return
        parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else {}
        code = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        self.on_answer(throttled=code in THROTTLE_CODES)

    def attach(self, client: Any, service: str) -> None:
        """Pace every call ``client`` makes (``service`` is its event name, e.g. ``iam``)."""
        client.meta.events.register(f"before-send.{service}", self.before_send)
        # First in line, so the answer is seen before the retry handler sleeps.
        client.meta.events.register_first(f"needs-retry.{service}", self.needs_retry)
