"""One pace for every IAM call of an account: a shared, self-adjusting rate limiter.

IAM throttles per account, not per client, and a sweep has many clients (with and without
SDK retries, per task). botocore's ``adaptive`` retry mode keeps its token bucket per
client, so each of them discovers the limit on its own by being throttled. ``Pacer`` is
one bucket that every IAM client of an ``Aws`` shares (wired in as a ``before-send``
hook): calls are spaced at the current rate, never above the configured ceiling.

With no ceiling the pacer lets everything through until IAM first pushes back. When IAM
throttles, its bucket is empty, so what it accepted of the calls sent over the last second
is about its rate: the pace goes to ``CUT`` of that (the throttled calls do not count, and
answers still on their way add to it as they come), then rises slowly (``PROBE``) up to it
and past it until IAM pushes back again. Only a call sent *after* the last cut cuts again:
the throttling answers to a burst of calls in flight are one push-back, not one each, and
a new cut starts from a new measure, never from the cut rate (no cascade of cuts).

``burst_s=0`` makes the ceiling a strict one (``[accounts] per_account_rate``): no burst
after an idle spell, and each call goes ``1 / rate`` after the previous one *actually*
went, in arrival order, even when the event loop woke that one late.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

# After a throttle, send at this share of the rate IAM accepted while pushing back...
CUT = 0.9
# ...then raise it by this share of that rate per second (at least PROBE_MIN calls/s per
# second), up to it and past it, until IAM pushes back again.
PROBE = 0.02
PROBE_MIN = 0.5
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
# (pacer, when its acquire let the call go): set in the caller's task by ``acquire``, read
# by ``on_answer`` for that call's answer (botocore runs both hooks in the calling task).
_SENT: ContextVar[tuple[Pacer, float] | None] = ContextVar("rotator_pacing_sent", default=None)


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
        self._limit: float | None = None  # the rate IAM accepted when it last pushed back
        self._cut_at = -math.inf  # when the rate was last cut
        self._uncut: float | None = None  # the rate before that cut
        self._answered: deque[float] = deque()  # answers (not throttled) in the last WINDOW_S
        self._best = 0  # the most answers IAM gave in one WINDOW_S so far
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0  # when the next call may go
        self._sent: deque[float] = deque()  # send times within the last WINDOW_S
        self._accepted: deque[float] = deque()  # send times of the calls answered lately
        self._measured = 0  # of those, the ones sent in the window before the last cut
        self.throttled = 0  # throttling answers seen
        self.waited_s = 0.0  # total time callers spent waiting for their turn

    @property
    def rate(self) -> float | None:
        """The current rate in calls per second (None: not limited)."""
        return self._rate

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
        self._went(now)

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
            self._went(now)

    def _went(self, now: float) -> None:
        """A call goes now: counted in the window, and marked in the caller's context so
        that its answer can tell when it went."""
        self._sent.append(now)
        _trim(self._sent, now - WINDOW_S)
        _SENT.set((self, now))

    def on_answer(self, *, throttled: bool, sent_at: float | None = None) -> None:
        """Adjust the rate for one answer from IAM to a call that went at ``sent_at``
        (None: when this caller's last ``acquire`` let it go, else now)."""
        now = self._clock()
        if sent_at is None:
            mark = _SENT.get()
            sent_at = mark[1] if mark is not None and mark[0] is self else now
        if throttled:
            self.throttled += 1
            if sent_at >= self._cut_at:  # else the last cut already answered that overload
                self._cut(now)
            return
        self._answered.append(now)
        _trim(self._answered, now - WINDOW_S)
        self._best = max(self._best, len(self._answered))
        self._accepted.append(sent_at)
        _trim(self._accepted, now - 3 * WINDOW_S)
        if self._cut_at - WINDOW_S < sent_at < self._cut_at:
            # A late answer to a call of the window before the last cut: IAM accepted more.
            self._measured += 1
            self._set_limit(self._measured / WINDOW_S)
        rate = self._rate
        if rate is None:
            return
        limit = self._limit if self._limit is not None else rate
        raised = rate + max(PROBE * limit, PROBE_MIN) / max(rate, 1.0)
        self._rate = raised if self.ceiling is None else min(raised, self.ceiling)

    def _cut(self, now: float) -> None:
        """IAM pushed back on a call sent since the last cut: the rate goes to a share of
        what IAM accepted of the calls sent over the last window (measured, never the
        current rate cut again: no cascade). Answers still on their way add to it as they
        come; until then at least half of what was sent counts as accepted."""
        since = now - WINDOW_S
        self._measured = sum(1 for t in self._accepted if since < t <= now)
        sent = sum(1 for t in self._sent if since < t <= now)
        self._cut_at = now
        self._next = max(self._next, now)  # IAM's bucket is empty: no burst from idle time
        self._uncut = self._rate
        self._rate = self._limit = None
        self._set_limit(max(self._measured, sent / 2) / WINDOW_S)

    def _set_limit(self, accepted: float) -> None:
        """IAM accepted ``accepted`` calls/s while pushing back: send at least a share of
        that (or the floor), never more than before the cut."""
        if self._limit is not None and accepted <= self._limit:
            return
        # Never below a third of what IAM has accepted: throttling that does not depend
        # on the rate (IAM's own hiccups) must not slow a sweep down to a crawl.
        floor = max(FLOOR, self._best / 3)
        self._limit = max(accepted, floor)
        rate = max(floor, CUT * self._limit)
        if self._uncut is not None:
            rate = min(rate, self._uncut)
        self._rate = rate if self._rate is None else max(self._rate, rate)

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


def _trim(times: deque[float], before: float) -> None:
    """Drop the times at or before ``before`` from the front of ``times``."""
    while times and times[0] <= before:
        times.popleft()
