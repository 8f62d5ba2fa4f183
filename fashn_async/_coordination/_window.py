"""The Redis store of a rolling window: the submit log and status budget of every process.

It answers the operations of :class:`~fashn_async._limits.WindowStore` with the Lua
scripts of ``_scripts`` (each atomic on the server), so the one limiter algorithm,
:class:`~fashn_async._limits.WindowLimiter`, serves a window shared by many processes.
``take`` talks to Redis at once (only the head waiter of a process asks); ``answer``,
``pause`` and ``seed`` are synchronous, applied here at once and written to Redis by
:meth:`RedisWindow.run` (or before the next ``take``).

A grant in Redis is dated a horizon ahead of when it is made (twice the client's
``timeout``), dated so again every third of a window while its request is out
(:meth:`RedisWindow.run`), and re-dated when its request ends (``RESTAMP``: to its
answer, or later when none came). While its process lives it counts until its request
ends, as "now" does in the in-process log; should the process die with the request out
(SIGKILL), it counts on for the horizon, as long as a server slow to act may still
count the request, and then leaves the window instead of holding it forever.

While Redis is away (:meth:`~RedisWindow.go_local`) grants come from a local
:class:`~fashn_async._window.MemoryWindow` holding a ``1/peers`` share of the limit,
which starts paused for one window: grants made through Redis just before it went away
still count on the API's side. Once Redis answers again (:meth:`~RedisWindow.rejoined`),
this process's grants of the last window are written back (``REPLAY``, each dated as
Redis had it: at its answer, or a horizon ahead while its request is out) and the share
keeps applying, on top of Redis, for one more window: other processes may not be back.

A Redis that lost the log without a call failing (a restart between two calls, a
FLUSHALL, an eviction or a DEL of the log) shows it by a new epoch, at the next grant
(``WINDOW_ACQUIRE``) or heartbeat (:meth:`RedisWindow.check`): this process writes its
grants back, and nothing is granted to anyone until every live process has (the
coordinator's ``hold``: each learns of it and writes its own back at its next heartbeat).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Iterable

import anyio
from redis.exceptions import RedisError

from fashn_async._coordination import _scripts
from fashn_async._coordination._link import Epoch, Link
from fashn_async._redact import safe_repr
from fashn_async._window import MemoryWindow, counted_by

__all__ = ["RedisWindow"]


class _Grant:
    """A grant: its member in the Redis log (None if made locally), the local share's, and
    when it was made (loop time)."""

    __slots__ = ("granted", "member", "settled", "share")

    def __init__(self, member: str | None, share: object | None, granted: float) -> None:
        self.member = member
        self.share = share
        self.granted = granted
        self.settled = False


class RedisWindow:
    """At most ``limit`` units in any ``window`` seconds, across every client of the key.

    Args:
        link: The client's link to Redis.
        name: Which window of the key (``"submit"``, ``"status"``).
        limit: Units allowed in one window.
        window: The window in seconds (the API's period plus the margin).
        horizon: Seconds ahead a grant is dated while its request is out: how long after
            it the server may still count the request should this process die then
            (twice the client's ``timeout``: the rule for a request with no answer).
    """

    def __init__(self, link: Link, name: str, limit: int, window: float, *, horizon: float) -> None:
        self.name, self.limit, self.window = name, limit, window
        self._link = link
        self._keys = [link.key(name), link.key(f"{name}:pause")]
        self._members = link.key("members")
        self._epoch = Epoch(link, f"the {name} window")
        self._horizon = horizon
        self._ids = itertools.count(1)
        self._dirty = asyncio.Event()
        self._paused_until = 0.0  # loop time
        self._pause_unshared = False
        self._replay_pending = False
        self._refunds: list[str] = []
        self._restamps: list[tuple[int, str]] = []  # (microseconds after now, member)
        self._out: dict[str, float] = {}  # member -> loop time last dated, request out
        #: member -> loop time it counts from (made, or its answer's date), for replay.
        self._mine: dict[str, float] = {}
        self._share: MemoryWindow | None = None
        self._share_until = math.inf

    @safe_repr
    def __repr__(self) -> str:
        where = "shared" if self._share is None else f"local share {self._share.limit}"
        return f"<RedisWindow {self.name} {where}>"

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # -- the store's operations ---------------------------------------------------------

    async def take(self, amount: int) -> tuple[_Grant | None, float]:
        """Ask Redis for a grant of ``amount``: ``(grant, 0)``, or ``(None, seconds to wait)``.

        Raises:
            ClientClosedError: the client is not open.
        """
        self._link.check_open()
        now = self._now()
        share, entry = self._current_share(now), None
        if share is not None:
            entry, wait = share.take_now(min(amount, share.limit))
            if entry is None:
                return None, wait
        if not self._link.online:
            self._remember(f"{self._link.owner}.{next(self._ids)}:{amount}")
            return _Grant(None, entry, now), 0.0
        if self._paused_until > now:
            self._drop(entry)
            return None, self._paused_until - now
        grant = f"{self._link.owner}.{next(self._ids)}"
        member = f"{grant}:{amount}"
        args = [self.limit, round(self.window * 1e6), amount, grant]
        args += [*self._epoch.args(grant), round(self._horizon * 1e6)]
        try:
            await self.flush()
            granted, value, epoch, live, version = await self._link.call(
                _scripts.WINDOW_ACQUIRE, [*self._keys, self._members], args
            )
        except RedisError as exc:
            self._drop(entry)
            self._link.lost(exc)
            return None, 0.0
        except asyncio.CancelledError:
            self._drop(entry)
            self._refund(member)  # if the script ran; removing a missing member is harmless
            raise
        self._epoch.seen(epoch, version, forgot=granted == 2)
        self._link.count(int(live))
        if granted == 2:  # Redis lost the log: write ours back; all hold until all have
            self._drop(entry)
            self._paused_until = max(self._paused_until, now + int(value) / 1e6)
            self._replay_pending = True
            self._dirty.set()
            return None, int(value) / 1e6
        if not granted:
            self._drop(entry)
            return None, int(value) / 1e6
        self._remember(member, now + self._horizon)
        self._out[member] = now
        if len(self._out) == 1:
            self._dirty.set()  # (:meth:`run` starts dating it again)
        return _Grant(member, entry, now), 0.0

    def answer(self, grant: object, *, counted: bool, answered: bool = True) -> None:
        """Re-date ``grant`` in Redis to when the server may have counted it
        (:func:`~fashn_async._window.counted_by`), or drop it; a second answer is ignored."""
        if not isinstance(grant, _Grant) or grant.settled:
            return
        grant.settled = True
        if grant.share is not None and self._share is not None:
            self._share.answer(grant.share, counted=counted, answered=answered)
        if grant.member is None:
            return
        self._out.pop(grant.member, None)
        if counted:
            now = self._now()
            later = counted_by(now, grant.granted, answered=answered) - now
            self._restamps.append((round(later * 1e6), grant.member))
            if grant.member in self._mine:  # (replayed with the date Redis has)
                self._mine[grant.member] = now + later
            self._dirty.set()
        else:
            self._refund(grant.member)

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``, in every process; extends, never shortens."""
        self._paused_until = max(self._paused_until, self._now() + max(seconds, 0.0))
        self._pause_unshared = True
        if self._share is not None:
            self._share.pause(seconds)
        self._dirty.set()

    def seed(self, history: Iterable[tuple[float, int]]) -> None:
        """Count earlier grants (``(age in seconds, amount)``; a negative age: one the
        server may count that much later still) in Redis, as on a rejoin."""
        now, history = self._now(), list(history)
        for age, amount in history:
            if age < self.window:
                self._mine[f"{self._link.owner}.s{next(self._ids)}:{amount}"] = now - age
        if self._share is not None:
            self._share.seed(history)
        self._replay_pending = True
        self._dirty.set()

    def in_window(self) -> int:
        """Units this process was granted in the window that ends now (Redis knows all)."""
        self._remember(None)
        return sum(int(member.rpartition(":")[2]) for member in self._mine)

    # -- writing to Redis ---------------------------------------------------------------

    async def run(self) -> None:
        """Write what changed here to Redis as it changes, and date the grants whose
        requests are out "now" again every third of a window; owned by the coordinator."""
        while True:
            with anyio.move_on_after(self.window / 3 if self._out else math.inf):
                await self._dirty.wait()
            self._dirty.clear()
            self._refresh()
            if self._link.online:
                try:
                    await self.flush()
                except RedisError as exc:
                    self._link.lost(exc)

    async def flush(self) -> None:
        """Write pending pauses, seeds, answers and refunds to Redis."""
        if self._pause_unshared:
            self._pause_unshared = False
            remaining = self._paused_until - self._now()
            if remaining > 0:
                await self._link.call(_scripts.PAUSE, self._keys[1:], [math.ceil(remaining * 1e6)])
        if self._replay_pending:
            self._replay_pending = False
            await self.replay()
        if self._restamps:
            restamps, self._restamps = self._restamps, []
            args: list[object] = [round(self.window * 1e6)]
            for later, member in restamps:
                args += [later, member]
            await self._link.call(_scripts.RESTAMP, self._keys[:1], args)
        if self._refunds:
            members, self._refunds = self._refunds, []
            await self._link.zrem(self._keys[0], members)

    def _refresh(self) -> None:
        """Date again, a horizon ahead of now, each grant whose request is out and was
        dated a third of a window ago or more (its request may stay out longer than
        the horizon: a slow journal write before it, say)."""
        now = self._now()
        for member, dated in self._out.items():
            if now - dated >= self.window / 3:
                self._restamps.append((round(self._horizon * 1e6), member))
                self._out[member] = now
                self._mine[member] = now + self._horizon

    def _remember(self, member: str | None, dated: float | None = None) -> None:
        now = self._now()
        if member is not None:
            self._mine[member] = now if dated is None else dated
        for old in [m for m, when in self._mine.items() if now - when >= self.window]:
            if old not in self._out:  # (one whose request is out still counts)
                del self._mine[old]

    def _refund(self, member: str) -> None:
        self._refunds.append(member)
        self._mine.pop(member, None)
        self._dirty.set()

    def _drop(self, entry: object | None) -> None:
        if entry is not None and self._share is not None:
            self._share.answer(entry, counted=False)

    # -- Redis away and back -----------------------------------------------------------

    def _current_share(self, now: float) -> MemoryWindow | None:
        if self._share is not None and self._link.online and now >= self._share_until:
            self._share = None
        return self._share

    def go_local(self, peers: int, *, extra: float = 0.0) -> None:
        """Redis is gone: grant from a local share, after one window (and ``extra``
        seconds) of nothing."""
        share = MemoryWindow(max(1, self.limit // peers), self.window)
        share.pause(max(self.window + extra, self._paused_until - self._now()))
        self._share, self._share_until = share, math.inf
        self._refunds.clear()
        self._restamps.clear()

    def reshare(self, peers: int) -> None:
        """More clients than when the local share was taken: it shrinks to ``1/peers``
        (grants already in the window count; none more until they fit under it)."""
        if self._share is not None:
            self._share.limit = min(self._share.limit, max(1, self.limit // peers))

    async def replay(self) -> None:
        """Write this process's grants of the last window back to Redis."""
        self._remember(None)
        now = self._now()
        args: list[object] = [round(self.window * 1e6)]
        for member, when in self._mine.items():
            args += [round((now - when) * 1e6), member]  # (below 0: dated ahead)
        await self._link.call(_scripts.REPLAY, self._keys[:1], args)

    async def check(self) -> None:
        """Whether Redis lost the log since this process last asked for a grant (at each
        heartbeat: an idle process learns of it here); if so, write its grants back, and
        no process is granted anything until all have (as in :meth:`take`)."""
        if await self._epoch.check(self._keys):
            await self.replay()

    def rejoined(self) -> None:
        """Redis is back: keep the local share one more window, then Redis alone."""
        now = self._now()
        self._share_until = now + self.window
        self._pause_unshared = self._paused_until > now
        self._dirty.set()
