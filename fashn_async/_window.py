"""The in-process store of a rolling window: a sliding log of grants on the loop's clock.

A store keeps the log of one rolling window and answers four atomic operations; the
one limiter algorithm (:class:`fashn_async._limits.WindowLimiter`) drives any store.
This one lives in the process; ``fashn_async._coordination._window.RedisWindow`` runs
the same operations as Lua scripts on a Redis server, shared by many processes.

- ``take(amount)``: add a grant of ``amount`` if it fits, or say how long until it could.
- ``answer(grant, counted=..., answered=...)``: the grant's request ended: date it when
  the server may have counted it (:func:`counted_by`), or drop it (it cannot have).
- ``pause(seconds)``: grant nothing until then (a 429 was seen); extends, never shortens.
- ``seed(history)``: grants made before this store existed (a restarted job's sends),
  as ``(age in seconds, amount)`` pairs; those still inside the window count (a
  negative age: dated ahead, as an unanswered request may be counted later still).

A grant here counts as "now" until answered: a request on the wire can only be dated
later by the server, never earlier. Windows are half-open: a grant answered at ``t``
stops counting at ``t + window``.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Callable, Iterable

from fashn_async._redact import safe_repr

__all__ = ["OVERDUE", "MemoryWindow", "Pacer", "Waiter", "counted_by"]


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def counted_by(now: float, granted: float, *, answered: bool) -> float:
    """When to date a request granted at ``granted`` and ended at ``now`` (seconds on one
    clock): ``now`` if it was answered (the server counted it before answering); if no
    answer came (a timeout, a dropped connection, the caller cancelled), as long again
    after ``now`` as it was out. A server slow to act on a request counts it when it
    acts, maybe after the client gave up on it (a break-it helper's server acted on a
    quarter of status calls 7 s late; booked when given up, at a 4 s timeout, 8 x 429):
    one acting up to twice as long after the send as the client waited is covered."""
    if answered:
        return now
    return now + max(now - granted, 0.0)


class _Entry:
    """One grant in the log: its amount, when it was made, and its time (infinite until
    its request ended)."""

    __slots__ = ("amount", "granted", "time")

    def __init__(self, amount: int, time: float = math.inf, granted: float = 0.0) -> None:
        self.amount = amount
        self.time = time
        self.granted = granted

    @safe_repr
    def __repr__(self) -> str:
        return f"<grant {self.amount} at {self.time:g}>"


class MemoryWindow:
    """At most ``limit`` units in any ``window`` seconds, for this process alone.

    Args:
        limit: Units allowed in one window.
        window: The window in seconds (the API's period plus any margin).
        clock: Seconds now; the running loop's time by default.
    """

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.limit = limit
        self.window = window
        self._now = clock if clock is not None else _loop_time
        self._log: list[_Entry] = []  # at most ``limit`` entries: scans are cheap
        self._paused_until = 0.0

    @safe_repr
    def __repr__(self) -> str:
        unanswered = sum(1 for entry in self._log if entry.time == math.inf)
        return f"<MemoryWindow {self._used()}/{self.limit} unanswered={unanswered}>"

    def in_window(self) -> int:
        """Units counted in the window that ends now (unanswered grants included)."""
        self._expire(self._now())
        return self._used()

    async def take(self, amount: int) -> tuple[_Entry | None, float]:
        """Add a grant of ``amount`` if it fits now: ``(grant, 0)``, else ``(None, wait)``.

        ``wait`` is the seconds until it could fit, infinite when only an answer still to
        come can make room.
        """
        return self.take_now(amount)

    def take_now(self, amount: int) -> tuple[_Entry | None, float]:
        """:meth:`take`, without the await (this store never waits for I/O)."""
        now = self._now()
        if now < self._paused_until:
            return None, self._paused_until - now
        self._expire(now)
        excess = self._used() + amount - self.limit
        if excess <= 0:
            entry = _Entry(amount, granted=now)
            self._log.append(entry)
            return entry, 0.0
        ready = math.inf
        for entry in sorted(self._log, key=lambda e: e.time):
            excess -= entry.amount
            if excess <= 0:
                ready = entry.time + self.window
                break
        return None, ready - now

    def answer(self, grant: object, *, counted: bool, answered: bool = True) -> None:
        """Date a ``grant`` whose request ended (:func:`counted_by`), or drop it if not
        ``counted``; a grant already dated, or anything else, is ignored."""
        if not isinstance(grant, _Entry) or grant.time != math.inf or grant not in self._log:
            return
        if counted:
            grant.time = counted_by(self._now(), grant.granted, answered=answered)
        else:
            self._log.remove(grant)

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``; extends, never shortens."""
        self._paused_until = max(self._paused_until, self._now() + max(seconds, 0.0))

    def seed(self, history: Iterable[tuple[float, int]]) -> None:
        """Count grants made ``age`` seconds ago: ``(age, amount)`` pairs, answered then (a
        negative age: one the server may count that much later still, as an unanswered
        request is dated, :func:`counted_by`)."""
        now = self._now()
        self._log += [_Entry(amount, now - age) for age, amount in history if age < self.window]

    def _used(self) -> int:
        return sum(entry.amount for entry in self._log)

    def _expire(self, now: float) -> None:
        if any(now - entry.time >= self.window for entry in self._log):
            self._log = [entry for entry in self._log if now - entry.time < self.window]


class Pacer:
    """A token bucket of ``burst`` refilled at ``refill`` tokens a second."""

    __slots__ = ("at", "burst", "refill", "tokens")

    def __init__(self, burst: int, refill: float) -> None:
        self.burst, self.refill = burst, refill
        self.tokens, self.at = float(burst), -math.inf

    def wait(self, amount: int, now: float) -> float:
        """Seconds from ``now`` until ``amount`` tokens (at most a burst) are there."""
        if now > self.at:
            self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.refill)
            self.at = now
        return max(0.0, (min(amount, self.burst) - self.tokens) / self.refill)


#: The priority of a waiter past its deadline: ahead of every finite priority, behind
#: only an infinite one (a call a person asked for).
OVERDUE = sys.float_info.max


class Waiter:
    """A caller queued for a grant; heaps order waiters by ``key``: (-priority, deadline
    once past it, arrival)."""

    __slots__ = ("_wakeup", "key", "woken")

    def __init__(self, priority: float, arrival: int) -> None:
        # (NaN read as 0: no ordering would hold, and the queue's waiters hung.)
        self.key = (-priority if priority == priority else -0.0, math.inf, arrival)
        self.woken = False
        self._wakeup: asyncio.Future[None] | None = None

    def overdue(self, deadline: float) -> None:
        """Its deadline (loop time) passed: it goes ahead of every finite priority, those
        past theirs in order of deadline."""
        self.key = (min(self.key[0], -OVERDUE), deadline, self.key[2])

    def overdue_at(
        self, deadline: float, reorder: Callable[[], None]
    ) -> asyncio.TimerHandle | None:
        """Go :meth:`overdue` at ``deadline`` (loop time), then call ``reorder`` (its
        queue's order changed); at once if it has passed. Returns the timer to cancel."""
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            self.overdue(deadline)
            return None

        def due() -> None:
            self.overdue(deadline)
            reorder()

        return loop.call_at(deadline, due)

    def __lt__(self, other: Waiter) -> bool:
        return self.key < other.key

    def wake(self) -> None:
        """End the current sleep, or the next one before it starts."""
        self.woken = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (may be infinite), or until :meth:`wake`."""
        loop = asyncio.get_running_loop()
        self._wakeup = wakeup = loop.create_future()
        timer = loop.call_later(seconds, self.wake) if seconds != math.inf else None
        try:
            await wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()
