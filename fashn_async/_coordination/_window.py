"""A rolling-window limiter shared through Redis: the submit limiter and status budget."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from typing import TYPE_CHECKING

import anyio
from redis.exceptions import RedisError

from fashn_async._coordination import _scripts
from fashn_async._limits import Grant, Rate, WindowLimiter

if TYPE_CHECKING:
    from fashn_async._coordination._coordinator import Coordinator

__all__ = ["SharedWindowLimiter"]


class _Grant:
    """A grant: its member in the Redis log (None if made locally), and the local share's."""

    __slots__ = ("member", "share")

    def __init__(self, member: str | None, share: tuple[WindowLimiter, Grant] | None) -> None:
        self.member = member
        self.share = share


#: A waiter: (-priority, arrival, amount, future of the grant's member or None).
_Entry = tuple[float, int, int, "asyncio.Future[str | None]"]


class SharedWindowLimiter:
    """Never more than ``rate.limit`` units in any window, across every client of the key.

    Waiters of this process queue locally by priority, then arrival; one task (:meth:`run`)
    asks Redis for the head waiter only, and sleeps exactly until the server says the
    head could fit. Across processes the order is whoever asks first once there is room.
    A ``pause()`` is applied here at once and written to Redis by the same task, where
    every process's next grant sees it.

    While Redis is away (:meth:`go_local`) grants come from a local :class:`WindowLimiter`
    holding a ``1/peers`` share of the limit, which starts paused for one window: grants
    made through Redis just before it went away still count on the API's side. Once Redis
    answers again (:meth:`rejoined`), the grants of the last window are written back and
    the share keeps applying, on top of Redis, for one more window: other processes may
    not be back yet.
    """

    def __init__(self, coordinator: Coordinator, name: str, rate: Rate, *, margin: float) -> None:
        self.rate = rate
        self.name = name
        self._co = coordinator
        self._keys = [coordinator.key(name), coordinator.key(f"{name}:pause")]
        self._window = rate.period + margin
        self._margin = margin
        self._waiters: list[_Entry] = []
        self._order = itertools.count()
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._paused_until = 0.0  # loop time
        self._pause_unshared = False
        self._refunds: list[str] = []
        self._restamps: list[str] = []
        self._mine: deque[tuple[float, str]] = deque()  # (loop time, member), for replay
        self._local: WindowLimiter | None = None
        self._local_until = math.inf
        self._failed: BaseException | None = None

    def __repr__(self) -> str:
        where = "shared" if self._local is None else f"local share {self._local.rate.limit}"
        return (
            f"<SharedWindowLimiter {self.name} {self.rate.limit}/{self.rate.period:g}s "
            f"{where} waiting={len(self._waiters)}>"
        )

    @property
    def waiting(self) -> int:
        """How many callers of this process wait for capacity."""
        return len(self._waiters)

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``, in every process; extends, never shortens."""
        now = asyncio.get_running_loop().time()
        self._paused_until = max(self._paused_until, now + max(seconds, 0.0))
        self._pause_unshared = True
        if self._local is not None:
            self._local.pause(seconds)
        self._wake.set()

    async def acquire(self, amount: int = 1, *, priority: float = 0.0) -> _Grant:
        """Wait until ``amount`` units fit in the shared window, then take them.

        Report the request's answer with :meth:`settle`.

        Raises:
            ValueError: ``amount`` can never fit.
        """
        if not 1 <= amount <= self.rate.limit:
            raise ValueError(f"amount must be from 1 to {self.rate.limit}, got {amount}")
        self._co.check_open()
        shared: tuple[WindowLimiter, Grant] | None = None
        try:
            while True:
                if self._failed is not None:
                    raise self._failed  # noqa: TRY301 - the share's grant is given back below
                share = self._share()
                if share is not None and shared is None:
                    grant = await share.acquire(min(amount, share.rate.limit), priority=priority)
                    shared = (share, grant)
                if not self._co.online:
                    self._remember(f"{self._co.owner}.{next(self._ids)}:{amount}")
                    return _Grant(None, shared)
                granted = await self._queue(amount, priority)
                if granted is not None:
                    return _Grant(granted, shared)
        except BaseException:
            if shared is not None:
                shared[0].settle(shared[1], counted=False)
            raise

    def settle(self, grant: Grant, *, counted: bool) -> None:
        """The request of ``grant`` was answered: re-date it to now in Redis, or drop it."""
        if not isinstance(grant, _Grant):
            return
        if grant.share is not None:
            grant.share[0].settle(grant.share[1], counted=counted)
        if grant.member is None:
            return
        if counted:
            self._restamps.append(grant.member)
            self._wake.set()
        else:
            self._refund(grant.member)

    def _share(self) -> WindowLimiter | None:
        loop = asyncio.get_running_loop()
        if self._local is not None and self._co.online and loop.time() >= self._local_until:
            self._local = None
        return self._local

    def _remember(self, member: str) -> None:
        now = asyncio.get_running_loop().time()
        self._mine.append((now, member))
        while self._mine and now - self._mine[0][0] >= self._window:
            self._mine.popleft()

    async def _queue(self, amount: int, priority: float) -> str | None:
        """Wait in the local queue for a grant from Redis; None if Redis went away."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        entry: _Entry = (-priority, next(self._order), amount, future)
        heapq.heappush(self._waiters, entry)
        if self._waiters[0] is entry:
            self._wake.set()
        try:
            member = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                granted = future.result()
                if granted is not None:  # granted, never used
                    self._refund(granted)
            elif entry in self._waiters:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            self._wake.set()
            raise
        return member

    def _refund(self, member: str) -> None:
        self._refunds.append(member)
        self._mine = deque(item for item in self._mine if item[1] != member)
        self._wake.set()

    # -- the task that talks to Redis --------------------------------------------------

    async def run(self) -> None:
        """Serve the head waiter, forward pauses and refunds; owned by the coordinator."""
        while True:
            self._wake.clear()
            wait = math.inf
            if self._co.online:
                try:
                    wait = await self._step()
                except RedisError as exc:
                    self._co.lost(exc)
                    continue
            if wait > 0:
                with anyio.move_on_after(wait):
                    await self._wake.wait()

    async def _step(self) -> float:
        """Share what changed here, then serve the head waiter: seconds until next time."""
        await self.flush()
        head = self._head()
        if head is None:
            return math.inf
        paused = self._paused_until - asyncio.get_running_loop().time()
        return paused if paused > 0 else await self._ask(head)

    async def _ask(self, head: _Entry) -> float:
        """Ask Redis for the head waiter's grant; the seconds to wait if there is none."""
        amount, future = head[2], head[3]
        grant = f"{self._co.owner}.{next(self._ids)}"
        args = [self.rate.limit, round(self._window * 1e6), amount, grant]
        granted, value = await self._co.call(_scripts.WINDOW_ACQUIRE, self._keys, args)
        if not granted:
            return int(value) / 1e6
        member = f"{grant}:{amount}"
        self._remember(member)
        if head in self._waiters and not future.done():
            self._waiters.remove(head)
            heapq.heapify(self._waiters)
            future.set_result(member)
        else:  # its waiter left while we asked
            self._refund(member)
        return 0.0

    def _head(self) -> _Entry | None:
        while self._waiters and self._waiters[0][3].done():
            heapq.heappop(self._waiters)
        return self._waiters[0] if self._waiters else None

    async def flush(self) -> None:
        """Write pending pauses and refunds to Redis."""
        if self._pause_unshared:
            self._pause_unshared = False
            remaining = self._paused_until - asyncio.get_running_loop().time()
            if remaining > 0:
                await self._co.call(_scripts.PAUSE, self._keys[1:], [math.ceil(remaining * 1e6)])
        if self._restamps:
            members, self._restamps = self._restamps, []
            window = round(self._window * 1e6)
            await self._co.call(_scripts.RESTAMP, self._keys[:1], [window, *members])
        if self._refunds:
            members, self._refunds = self._refunds, []
            await self._co.zrem(self._keys[0], members)

    # -- Redis away and back -----------------------------------------------------------

    def go_local(self, peers: int) -> None:
        """Redis is gone: grant from a local share, after one window of nothing."""
        rate = Rate(max(1, self.rate.limit // peers), self.rate.period)
        share = WindowLimiter(rate, margin=self._margin)
        share.pause(max(self._window, self._paused_until - asyncio.get_running_loop().time()))
        self._local, self._local_until = share, math.inf
        self._refunds.clear()
        self._restamps.clear()
        waiters, self._waiters = sorted(self._waiters), []
        for entry in waiters:  # in order: they ask the share in this order
            if not entry[3].done():
                entry[3].set_result(None)

    async def replay(self) -> None:
        """Write this process's grants of the last window back to Redis."""
        now = asyncio.get_running_loop().time()
        args: list[object] = [round(self._window * 1e6)]
        for when, member in self._mine:
            args += [round((now - when) * 1e6), member]
        await self._co.call(_scripts.REPLAY, self._keys[:1], args)

    def rejoined(self) -> None:
        """Redis is back: keep the local share one more window, then Redis alone."""
        self._local_until = asyncio.get_running_loop().time() + self._window
        self._pause_unshared = self._paused_until > asyncio.get_running_loop().time()
        self._wake.set()

    def fail(self, error: BaseException) -> None:
        """Closed, or broken by a bug: every waiter, now and later, gets ``error``."""
        self._failed = error
        waiters, self._waiters = self._waiters, []
        for entry in waiters:
            if not entry[3].done():
                entry[3].set_exception(error)
