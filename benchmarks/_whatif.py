"""A proposed fix, tried in the benchmark's client process only: answer-stamped windows.

Our ``WindowLimiter`` dates each grant when it is *granted* and adds a fixed margin to
the window. The server dates it when it *admits* the request, which is later by however
long the request took to get there and wait its turn. When one window's requests reach
the server more slowly than the next window's (cold connections, a busy server, a loaded
machine), the next window's first request lands less than W after the previous one's and
is refused, however small the margin.

Here each grant is dated again when its answer arrives (an upper bound of when the server
admitted it, so the next grant after it is at least W later on the server's clock too);
while no answer has come it counts as in the window; a 429 answer gives the grant back
(the server did not count it). No margin is needed. The patch swaps the engine's submit
limiter and status budget for :class:`AnswerStampedWindow` and wraps its transport's
``request``; it relies on the attribute names ``_engine``, ``submit_limiter``,
``status_budget`` and ``transport``, and refuses to run if they are gone.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
from typing import Any

__all__ = ["AnswerStampedWindow", "install"]

_GRANT: contextvars.ContextVar[tuple[AnswerStampedWindow, _Grant] | None] = contextvars.ContextVar(
    "whatif_grant", default=None
)


class _Grant:
    __slots__ = ("amount", "stamp")

    def __init__(self, amount: int) -> None:
        self.amount = amount
        self.stamp: float | None = None  # None: no answer yet, counts in every window


class AnswerStampedWindow:
    """At most ``limit`` units whose answers came less than ``period`` ago, or are pending."""

    def __init__(self, rate: Any) -> None:
        self.rate = rate
        self.limit: int = rate.limit
        self.period: float = rate.period
        self._grants: list[_Grant] = []
        self._waiters: list[tuple[float, int, int, asyncio.Future[_Grant]]] = []
        self._order = itertools.count()
        self._paused_until = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<AnswerStampedWindow {self.limit}/{self.period:g}s>"

    def pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + max(seconds, 0.0))
        self._reschedule()

    async def acquire(self, amount: int = 1, *, priority: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Grant] = loop.create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), amount, future))
        self._reschedule()
        try:
            grant = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted, never used
                self._grants.remove(future.result())
            self._reschedule()
            raise
        _GRANT.set((self, grant))

    def answered(self, grant: _Grant, *, counted: bool) -> None:
        """The grant's answer came: date it now, or give it back if it was refused."""
        if grant.stamp is not None or grant not in self._grants:
            return
        if counted:
            grant.stamp = asyncio.get_running_loop().time()
        else:
            self._grants.remove(grant)
        self._reschedule()

    def _in_window(self, now: float) -> tuple[int, float | None]:
        """Units in the window now, and when the oldest stamped one leaves it."""
        self._grants = [g for g in self._grants if g.stamp is None or now - g.stamp < self.period]
        stamps = [g.stamp for g in self._grants if g.stamp is not None]
        return sum(g.amount for g in self._grants), (min(stamps) + self.period if stamps else None)

    def _reschedule(self) -> None:
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = loop.time()
        while self._waiters:
            _, _, amount, future = self._waiters[0]
            if future.done():
                heapq.heappop(self._waiters)
                continue
            used, frees_at = self._in_window(now)
            if now < self._paused_until:
                self._timer = loop.call_at(self._paused_until, self._reschedule)
                return
            if used + amount > self.limit:
                if frees_at is not None:  # else an answer will reschedule
                    self._timer = loop.call_at(max(frees_at, now + 1e-6), self._reschedule)
                return
            heapq.heappop(self._waiters)
            grant = _Grant(amount)
            self._grants.append(grant)
            future.set_result(grant)


def install(client: Any, names: tuple[str, ...] = ("submit_limiter", "status_budget")) -> None:
    """Swap the client's submit limiter and status budget for answer-stamped ones."""
    engine = client._engine
    for name in ("submit_limiter", "status_budget", "transport"):
        if not hasattr(engine, name):
            raise RuntimeError(f"the engine has no {name!r} any more: update _whatif.py")
    for name in names:
        current = getattr(engine, name)
        if current is not None:
            setattr(engine, name, AnswerStampedWindow(current.rate))
    transport = engine.transport
    send = transport.request

    async def request(method: str, path: str, **kwargs: Any) -> Any:
        held = _GRANT.get()
        _GRANT.set(None)
        try:
            response = await send(method, path, **kwargs)
        except BaseException:
            if held is not None:
                held[0].answered(held[1], counted=True)  # it may have landed: keep it
            raise
        if held is not None:
            held[0].answered(held[1], counted=response.status != 429)
        return response

    transport.request = request
