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
the server's does, however slow the network (a TLS handshake, a loaded machine); one that
got no answer, later still (``_window.counted_by``). Until then it counts as "now".
:meth:`~WindowLimiter.settle` reports the end: ``counted=False`` gives the capacity back
(the request never reached the server, or the server said it did not count it).

GET /v1/credits gets a strict :class:`WindowLimiter` too (30 per 10 s, NOTES.md; the
engine's own, also under coordination, as credit checks are rare): a leaky bucket would
let about twice the limit into one rolling window. Waiters are served
by priority, then arrival; a cancelled waiter takes no capacity; a 429 pauses all.

One algorithm, :class:`WindowLimiter`, over a :class:`WindowStore`: the in-process
:class:`~fashn_async._window.MemoryWindow`, or the Redis store of
``fashn_async._coordination`` shared by many processes (made by a
:class:`LimiterBackend`). ``pause()``, ``settle()`` and ``release()`` are synchronous on
purpose: they run in ``finally`` blocks, where awaiting I/O could itself be cancelled; a
shared store applies them locally at once and forwards them from its own task.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Hashable, Iterable
from typing import Any, Literal, Protocol, TypeAlias

import attrs

from fashn_async._redact import safe_repr
from fashn_async._validators import (
    at_least_one,
    non_negative_seconds,
    optional_at_least_one,
    seconds,
)
from fashn_async._window import MemoryWindow, Pacer, Waiter
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
    "WindowStore",
]

# A timer that fires a hair before an event leaves the window (float residue in loop
# time) is re-armed at least this far ahead, so it can never spin in place. Admission
# itself is exact: never early, so a strict server never sees R+1 in one window.
_MIN_STEP = 1e-6


@attrs.frozen
class Rate:
    """At most ``limit`` units in any window of ``period`` seconds.

    Raises:
        ConfigurationError: ``limit`` not an int >= 1, or ``period`` not a number of
            seconds above 0 and at most a day (``MAX_SECONDS``).
    """

    limit: int = attrs.field(validator=at_least_one)
    period: float = attrs.field(validator=seconds)


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
        credits: GET /v1/credits calls per rolling window (a strict window, as the others).
        margin: Seconds added to every window, for the API's own rounding and clock
            (grants are dated by their answers, so network delay needs none).
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
    margin: float = attrs.field(default=0.25, validator=non_negative_seconds)
    status_burst: int | None = attrs.field(default=10, validator=optional_at_least_one)

    def scaled(self, factor: float) -> Limits:
        """These limits with every window (and the margin) multiplied by ``factor``: for
        an emulator whose time runs ``1/factor`` times faster."""

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

    async def acquire(
        self, amount: int = 1, *, priority: float = 0.0, deadline: float | None = None
    ) -> Grant:
        """Wait until ``amount`` units fit, then take them (past ``deadline``, loop time,
        ahead of every finite priority); ValueError if they never can."""
        ...

    def settle(self, grant: Grant, *, counted: bool, answered: bool = True) -> None:
        """The request of ``grant`` ended: date it (later if unanswered), or give it back."""
        ...

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (a 429 was seen); extends, never shortens."""
        ...

    def seed(self, history: Iterable[tuple[float, int]]) -> None:
        """Count earlier sends, as ``(age in seconds, amount)`` pairs."""
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
        """A rolling-window limiter; ``name`` tells apart the limits of one key; ``burst``:
        grants allowed back to back before pacing at ``rate`` (None: no pacing)."""
        ...

    def slots(self, capacity: int | None) -> SlotGate:
        """An in-flight gate; ``None`` means no cap."""
        ...


class WindowStore(Protocol):
    """The log of one rolling window: atomic operations on the store's own clock."""

    async def take(self, amount: int) -> tuple[Grant | None, float]:
        """Add a grant of ``amount`` if it fits: ``(grant, 0)``; else ``(None, seconds)``
        until it could (infinite: only an answer still to come can make room)."""
        ...

    def answer(self, grant: Grant, *, counted: bool, answered: bool = True) -> None:
        """The grant's request ended: date it (``counted_by``), or drop it if not ``counted``."""
        ...

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``; extends, never shortens."""
        ...

    def seed(self, history: Iterable[tuple[float, int]]) -> None:
        """Count earlier grants, given as ``(age in seconds, amount)`` pairs."""
        ...

    def in_window(self) -> int:
        """Units this store knows counted in the window that ends now."""
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


class WindowLimiter:
    """Never more than ``rate.limit`` units in any ``rate.period + margin`` window.

    The one limiter algorithm, over a :class:`WindowStore`: callers queue by priority,
    then arrival; only the head of the queue asks the store, and sleeps exactly as long
    as the store says (or until a local answer, pause or departure wakes it).

    Args:
        rate: The limit and its window.
        margin: Seconds added to the window.
        burst: If set, also a token bucket of this size refilled at ``rate``: at most
            ``burst`` grants back to back, then one every ``period / limit`` seconds.
        store: Where the window's log lives; a new in-process log by default.
    """

    def __init__(
        self,
        rate: Rate,
        *,
        margin: float = 0.0,
        burst: int | None = None,
        store: WindowStore | None = None,
    ) -> None:
        self.rate = rate
        window = rate.period + margin
        self.store: WindowStore = store if store is not None else MemoryWindow(rate.limit, window)
        self._pacer = Pacer(burst, rate.limit / window) if burst is not None else None
        self._queue: list[Waiter] = []
        self._arrivals = itertools.count()
        self._failed: BaseException | None = None

    @safe_repr
    def __repr__(self) -> str:
        return (
            f"<WindowLimiter {self.rate.limit}/{self.rate.period:g}s {self.store!r} "
            f"waiting={len(self._queue)}>"
        )

    @property
    def waiting(self) -> int:
        """How many callers are waiting for capacity."""
        return len(self._queue)

    def in_window(self) -> int:
        """Units counted in the window that ends now (unanswered grants included)."""
        return self.store.in_window()

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (a 429 was seen); extends, never shortens."""
        self.store.pause(seconds)
        self.wake()

    def seed(self, history: Iterable[tuple[float, int]]) -> None:
        """Count grants made before this limiter, ``(age in seconds, amount)`` pairs: a
        restarted job's sends still inside the window hold back its new ones."""
        self.store.seed(history)
        self.wake()

    async def acquire(
        self, amount: int = 1, *, priority: float = 0.0, deadline: float | None = None
    ) -> Grant:
        """Wait until ``amount`` units fit in the window, then take them.

        Higher ``priority`` goes first; equal priorities go in arrival order. Past
        ``deadline`` (loop time; None: never) the caller goes ahead of every finite
        priority, callers past theirs in order of deadline: a low priority waits while
        others matter more, but not past it. Report the request's answer with
        :meth:`settle`; until then the grant counts as "now".

        Raises:
            ValueError: ``amount`` can never fit.
        """
        if not 1 <= amount <= self.rate.limit:
            raise ValueError(f"amount must be from 1 to {self.rate.limit}, got {amount}")
        waiter = Waiter(priority, next(self._arrivals))
        timer = waiter.overdue_at(deadline, self._reorder) if deadline is not None else None
        heapq.heappush(self._queue, waiter)
        try:
            while True:
                if self._failed is not None:
                    raise self._failed
                wait = math.inf
                waiter.woken = False  # a wake-up from here on cuts the next sleep short
                if self._queue[0] is waiter:
                    grant, wait = await self._ask(amount)
                    if grant is not None:
                        return grant
                if not waiter.woken:
                    await waiter.sleep(max(wait, _MIN_STEP))
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in self._queue:
                self._queue.remove(waiter)
                heapq.heapify(self._queue)
            self.wake()

    def _reorder(self) -> None:
        """A waiter's place changed (its deadline passed): the new head asks."""
        heapq.heapify(self._queue)
        self.wake()

    def settle(self, grant: Grant, *, counted: bool, answered: bool = True) -> None:
        """The request of ``grant`` ended: date it, or drop it.

        Args:
            grant: What :meth:`acquire` returned; a second settle is ignored.
            counted: False when the request cannot have counted on the server (never
                sent, or refused uncounted): the capacity comes back at once.
            answered: False when none came (timeout, dropped connection, cancel): then
                it is dated as long again after now as it was out.
        """
        self.store.answer(grant, counted=counted, answered=answered)
        self.wake()

    def wake(self) -> None:
        """Have the head of the queue ask the store again (something changed)."""
        if self._queue:
            self._queue[0].wake()

    def fail(self, error: BaseException) -> None:
        """Every waiter, now and later, gets ``error`` (its store closed, or broke)."""
        self._failed = error
        for waiter in self._queue:
            waiter.wake()

    async def _ask(self, amount: int) -> tuple[Grant | None, float]:
        if self._pacer is not None:
            wait = self._pacer.wait(amount, asyncio.get_running_loop().time())
            if wait > 0:
                return None, wait
        grant, wait = await self.store.take(amount)
        if grant is not None and self._pacer is not None:
            self._pacer.tokens -= amount  # may go below zero for an amount over the burst
        return grant, wait


class Slots:
    """A fair counting gate: at most ``capacity`` holders, served in arrival order."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self._semaphore = asyncio.Semaphore(capacity) if capacity is not None else None
        self.in_use = 0
        self._leases = itertools.count(1)

    @safe_repr
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
