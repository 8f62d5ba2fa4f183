"""Client-side limits: a strict rolling-window limiter, in-flight slots, and their config.

Why not ``aiolimiter.AsyncLimiter`` for submissions: it is a leaky bucket. With
``AsyncLimiter(25, 60)`` a burst of 25 goes at once and the bucket then drains at 25/60
per second, so 49 submissions can land inside one rolling 60 s window; a strict server
answers 429 to the 26th. ``AsyncLimiter(1, 2.4)`` keeps the average but gives up the burst.
The API's limit is "at most R in ANY W-second window", so :class:`WindowLimiter` keeps a
log of what it granted (a sliding log): the first R go at once and the next R exactly one
window (plus ``margin``) later.

A grant is dated by when its request was *answered*, not when it was granted: the server
dated it somewhere in between, so a window counted from the answer can never end before
the server's does, however slow the network (a TLS handshake, a loaded machine). Until it
is answered a grant counts as "now". The caller reports the answer with
:meth:`~WindowLimiter.settle`: ``counted=False`` gives the capacity back (the request
never reached the server, or the server said it did not count it).

aiolimiter is the right tool where a bucket's semantics are the right ones; the client
uses it for GET /v1/credits, whose limit is soft.

Waiters are served in order of priority, then arrival (plain FIFO when every priority
is equal, as for submissions); a waiter cancelled before it could use its grant gives
the capacity back. A 429 pauses the whole limiter until Retry-After.

The engine knows its limiters only through the protocols :class:`RateLimiter` and
:class:`SlotGate`, made by a :class:`LimiterBackend`: :class:`LocalBackend` gives the
in-process ones here, ``fashn_async._coordination`` gives ones shared by many processes
through Redis. ``pause()`` and ``release()`` are synchronous on purpose: they are called
from ``finally`` blocks and error paths, where awaiting I/O could itself be cancelled; a
shared backend applies them locally at once and forwards them from its own task.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Hashable
from typing import Any, Literal, Protocol, TypeAlias

import attrs

from fashn_async._validators import at_least_one, non_negative, optional_at_least_one, positive
from fashn_async.errors import ConfigurationError

__all__ = [
    "Grant",
    "Lease",
    "LimiterBackend",
    "Limits",
    "LocalBackend",
    "Rate",
    "RateLimiter",
    "SlotGate",
    "Slots",
    "WindowLimiter",
]

# A timer that fires a hair before an event leaves the window (float residue in loop
# time) is re-armed at least this far ahead, so it can never spin in place. Admission
# itself is exact: never early, so a strict server never sees R+1 in one window.
_MIN_STEP = 1e-6


@attrs.frozen
class Rate:
    """At most ``limit`` units in any window of ``period`` seconds."""

    limit: int = attrs.field(validator=at_least_one)
    period: float = attrs.field(validator=positive)


def _check_rate(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, Rate):
        raise ConfigurationError(
            f"{attribute.name} must be a Rate or None, got {type(value).__name__}"
        )


@attrs.frozen(kw_only=True)
class Limits:
    """The API key's limits, as the client should respect them. ``None`` turns one off.

    Args:
        submit: Generations per rolling window for POST /v1/run (``num_samples`` counts).
        status: Status calls per rolling window, shared by every poller of the client.
        in_flight: Predictions submitted and not yet seen finished.
        credits: GET /v1/credits calls (a leaky bucket is enough here).
        margin: Seconds added to every window, so network jitter between two requests
            can never make a strict server see R+1 in one window.
        status_burst: Status calls granted back to back before the rest are paced at
            ``status.limit / status.period`` a second (``None``: no pacing). Without
            pacing, 25 pollers spend 50 calls in 2 s and then wait 8 s for the window to
            roll, however likely done a prediction is; paced, the budget keeps flowing
            to the predictions most likely finished.
    """

    submit: Rate | None = attrs.field(default=Rate(25, 60.0), validator=_check_rate)
    status: Rate | None = attrs.field(default=Rate(50, 10.0), validator=_check_rate)
    in_flight: int | None = attrs.field(default=6, validator=optional_at_least_one)
    credits: Rate | None = attrs.field(default=Rate(30, 10.0), validator=_check_rate)
    margin: float = attrs.field(default=0.25, validator=non_negative)
    status_burst: int | None = attrs.field(default=10, validator=optional_at_least_one)

    def scaled(self, factor: float) -> Limits:
        """These limits with every window (and the margin) multiplied by ``factor``.

        For an emulator whose time runs ``1/factor`` times faster.
        """

        def rate(value: Rate | None) -> Rate | None:
            return Rate(value.limit, value.period * factor) if value is not None else None

        return attrs.evolve(
            self,
            submit=rate(self.submit),
            status=rate(self.status),
            credits=rate(self.credits),
            margin=self.margin * factor,
        )

    @classmethod
    def unlimited(cls) -> Limits:
        """No client-side limits at all (for a server without them)."""
        return cls(
            submit=None, status=None, in_flight=None, credits=None, margin=0.0, status_burst=None
        )


#: What a slot gate hands out and takes back; opaque to its holder.
Lease: TypeAlias = Hashable
#: What a rate limiter hands out and :meth:`RateLimiter.settle` takes back; opaque.
Grant: TypeAlias = Hashable


class RateLimiter(Protocol):
    """Grants units of a rolling-window limit, in order of priority then arrival."""

    @property
    def rate(self) -> Rate:
        """The limit and its window."""
        ...

    async def acquire(self, amount: int = 1, *, priority: float = 0.0) -> Grant:
        """Wait until ``amount`` units fit, then take them; ValueError if they never can."""
        ...

    def settle(self, grant: Grant, *, counted: bool) -> None:
        """The request of ``grant`` was answered: date it now, or give it back."""
        ...

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (a 429 was seen); extends, never shortens."""
        ...


class SlotGate(Protocol):
    """At most ``capacity`` holders of a slot at once, served in arrival order."""

    @property
    def in_use(self) -> int:
        """Slots held now (by this process)."""
        ...

    async def acquire(self) -> Lease:
        """Wait for a free slot; the lease returned is what :meth:`release` takes."""
        ...

    def release(self, lease: Lease) -> None:
        """Give the slot of ``lease`` back."""
        ...


class LimiterBackend(Protocol):
    """Makes the limiters of one client: in-process, or shared through a server."""

    def window(
        self,
        name: Literal["submit", "status"],
        rate: Rate,
        *,
        margin: float,
        burst: int | None = None,
    ) -> RateLimiter:
        """A rolling-window limiter; ``name`` tells apart the limits of one key.

        ``burst``: grants allowed back to back before pacing at ``rate`` (None: no pacing).
        """
        ...

    def slots(self, capacity: int | None) -> SlotGate:
        """An in-flight gate; ``None`` means no cap."""
        ...


class LocalBackend:
    """Limiters for this process alone: :class:`WindowLimiter` and :class:`Slots`."""

    def __repr__(self) -> str:
        return "<LocalBackend>"

    def window(
        self,
        name: Literal["submit", "status"],
        rate: Rate,
        *,
        margin: float,
        burst: int | None = None,
    ) -> WindowLimiter:
        """A strict sliding-log limiter in this process."""
        return WindowLimiter(rate, margin=margin, burst=burst)

    def slots(self, capacity: int | None) -> Slots:
        """A FIFO in-flight gate in this process."""
        return Slots(capacity)


class _Entry:
    """One grant in the log: its amount, and its time (infinite until answered)."""

    __slots__ = ("amount", "time")

    def __init__(self, amount: int) -> None:
        self.amount = amount
        self.time = math.inf

    def __repr__(self) -> str:
        return f"<grant {self.amount} at {self.time:g}>"


class WindowLimiter:
    """Never more than ``rate.limit`` units in any ``rate.period + margin`` window.

    Args:
        rate: The limit and its window.
        margin: Seconds added to the window.
        burst: If set, also a token bucket of this size refilled at ``rate``: at most
            ``burst`` grants back to back, then one every ``period / limit`` seconds.
    """

    def __init__(self, rate: Rate, *, margin: float = 0.0, burst: int | None = None) -> None:
        self.rate = rate
        self._window = rate.period + margin
        self._burst = burst
        self._refill = rate.limit / self._window  # tokens a second
        self._tokens = float(burst) if burst is not None else 0.0
        self._tokens_at = -math.inf
        self._log: list[_Entry] = []  # at most rate.limit entries: scans are cheap
        self._waiters: list[tuple[float, int, int, asyncio.Future[_Entry]]] = []
        self._order = itertools.count()
        self._paused_until = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        open_ = sum(1 for entry in self._log if entry.time == math.inf)
        return (
            f"<WindowLimiter {self.rate.limit}/{self.rate.period:g}s "
            f"in_window={self._used()} unanswered={open_} waiting={len(self._waiters)}>"
        )

    @property
    def waiting(self) -> int:
        """How many callers are waiting for capacity."""
        return len(self._waiters)

    def in_window(self) -> int:
        """Units counted in the window that ends now (unanswered grants included)."""
        self._expire(asyncio.get_running_loop().time())
        return self._used()

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (a 429 was seen); extends, never shortens."""
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + max(seconds, 0.0))
        self._reschedule(loop)

    async def acquire(self, amount: int = 1, *, priority: float = 0.0) -> Grant:
        """Wait until ``amount`` units fit in the window, then take them.

        Higher ``priority`` goes first; equal priorities go in arrival order. Report the
        request's answer with :meth:`settle`; until then the grant counts as "now".

        Raises:
            ValueError: ``amount`` can never fit.
        """
        if not 1 <= amount <= self.rate.limit:
            raise ValueError(f"amount must be from 1 to {self.rate.limit}, got {amount}")
        loop = asyncio.get_running_loop()
        if not self._waiters and self._admissible(amount, loop.time()):
            return self._record(amount)
        future: asyncio.Future[_Entry] = loop.create_future()
        waiter = (-priority, next(self._order), amount, future)
        heapq.heappush(self._waiters, waiter)
        self._reschedule(loop)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.settle(future.result(), counted=False)  # granted, never used
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
                heapq.heapify(self._waiters)
            self._reschedule(loop)
            raise

    def settle(self, grant: Grant, *, counted: bool) -> None:
        """The request of ``grant`` was answered (or failed): date it now, or drop it.

        Args:
            grant: What :meth:`acquire` returned.
            counted: False when the request cannot have counted on the server (never
                sent, or refused uncounted): the capacity comes back at once.
        """
        if not isinstance(grant, _Entry) or grant not in self._log or grant.time != math.inf:
            return
        loop = asyncio.get_running_loop()
        if counted:
            grant.time = loop.time()
        else:
            self._log.remove(grant)
        self._reschedule(loop)

    def _used(self) -> int:
        return sum(entry.amount for entry in self._log)

    def _expire(self, now: float) -> None:
        if any(now - entry.time >= self._window for entry in self._log):
            self._log = [entry for entry in self._log if now - entry.time < self._window]

    def _tokens_now(self, now: float) -> float:
        if self._burst is None:
            return math.inf
        if now > self._tokens_at:
            gained = (now - self._tokens_at) * self._refill
            self._tokens = min(float(self._burst), self._tokens + gained)
            self._tokens_at = now
        return self._tokens

    def _admissible(self, amount: int, now: float) -> bool:
        if now < self._paused_until:
            return False
        if self._tokens_now(now) < min(amount, self._burst or amount):
            return False
        self._expire(now)
        return self._used() + amount <= self.rate.limit

    def _record(self, amount: int) -> _Entry:
        entry = _Entry(amount)
        self._log.append(entry)
        if self._burst is not None:
            self._tokens -= amount  # may go below zero for an amount over the burst
        return entry

    def _ready_at(self, amount: int, now: float) -> float:
        """The earliest time ``amount`` more units fit, ignoring waiters behind.

        Infinite when only answers still to come can make room: :meth:`settle` then
        reschedules.
        """
        self._expire(now)
        excess = self._used() + amount - self.rate.limit
        ready = now
        for entry in sorted(self._log, key=lambda e: e.time):
            if excess <= 0:
                break
            excess -= entry.amount
            ready = entry.time + self._window
        if self._burst is not None:
            missing = min(amount, self._burst) - self._tokens_now(now)
            if missing > 0:
                ready = max(ready, now + missing / self._refill)
        return max(ready, self._paused_until)

    def _reschedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = loop.time()
        while self._waiters:
            _, _, amount, future = self._waiters[0]
            if future.done():  # cancelled while queued; its task removes it
                heapq.heappop(self._waiters)
                continue
            if not self._admissible(amount, now):
                ready = self._ready_at(amount, now)
                if ready != math.inf:
                    self._timer = loop.call_at(max(ready, now + _MIN_STEP), self._reschedule, loop)
                return
            heapq.heappop(self._waiters)
            future.set_result(self._record(amount))


class Slots:
    """A fair counting gate: at most ``capacity`` holders, served in arrival order."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self._semaphore = asyncio.Semaphore(capacity) if capacity is not None else None
        self.in_use = 0
        self._leases = itertools.count(1)

    def __repr__(self) -> str:
        return f"<Slots {self.in_use}/{self.capacity if self.capacity is not None else 'inf'}>"

    async def acquire(self) -> int:
        """Wait for a free slot and take it; returns a lease number."""
        if self._semaphore is not None:
            await self._semaphore.acquire()
        self.in_use += 1
        return next(self._leases)

    def release(self, lease: Lease | None = None) -> None:
        """Give a slot back (any holder's: local slots are interchangeable)."""
        self.in_use -= 1
        if self._semaphore is not None:
            self._semaphore.release()
