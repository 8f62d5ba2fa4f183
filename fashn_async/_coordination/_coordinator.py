"""The per-client coordinator: makes the shared limiters, runs heartbeat and fallback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import anyio
from redis.exceptions import RedisError

from fashn_async._coordination import _scripts
from fashn_async._coordination._leases import SharedSlots
from fashn_async._coordination._link import Link, Settings
from fashn_async._coordination._window import RedisWindow
from fashn_async._limits import Rate, Slots, WindowLimiter
from fashn_async._redact import Secret, safe_repr
from fashn_async.errors import ClientClosedError, CoordinationError

__all__ = ["Coordinator"]

logger = logging.getLogger("fashn_async")


class Coordinator:
    """Limiters of one client, shared through Redis with every client of the same key.

    Made by :meth:`RedisCoordination.coordinator`; the client starts it in
    ``__aenter__`` and closes it in ``aclose``. It is the engine's limiter backend.

    Args:
        config: The coordination settings.
        api_key: Hashed into every key's name, never stored.
        request_timeout: The client's ``timeout``, seconds (the horizon is twice it).
        clock: The scripts' "now", in seconds, for tests on fake loop time; ``None`` (the
            default) dates everything by the Redis server's ``TIME``.
    """

    def __init__(
        self,
        config: Settings,
        *,
        api_key: str | Secret,
        request_timeout: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        #: Seconds ahead a grant is dated while its request is out: a server slow to act
        #: may count a request with no answer up to twice the client's ``timeout`` after
        #: it was sent (``_window.counted_by``), also when its process died.
        self.horizon = 2 * request_timeout
        self.link = Link(config, api_key=api_key, clock=clock)
        self.link.on_lost = self._go_local
        self.link.on_joined = self._reshare
        self.heartbeat = config.lease_ttl / 3
        self._windows: list[tuple[WindowLimiter, RedisWindow]] = []
        self._slots: list[SharedSlots] = []
        self._task: asyncio.Future[None] | None = None

    @safe_repr
    def __repr__(self) -> str:
        link = self.link
        state = "online" if link.online else f"local share of 1/{link.peers}"
        return f"<Coordinator {link.url} {link.state} {state} peers={link.peers}>"

    @property
    def url(self) -> str:
        """The Redis URL, password masked."""
        return self.link.url

    @property
    def online(self) -> bool:
        """Whether Redis answers; while not, each limiter keeps to a local share."""
        return self.link.online

    @property
    def peers(self) -> int:
        """Clients of this key seen alive at the last grant, slot or heartbeat (this one
        included)."""
        return self.link.peers

    def key(self, name: str) -> str:
        """The Redis key ``name`` of this API key."""
        return self.link.key(name)

    # -- the backend the engine asks for its limiters ----------------------------------

    def window(
        self,
        name: Literal["submit", "status"],
        rate: Rate,
        *,
        margin: float,
        burst: int | None = None,
    ) -> WindowLimiter:
        """A rolling-window limiter over a window shared by every client of the key.

        ``burst`` (pacing) is not applied across processes: their pollers are not in step.
        """
        period = rate.period + margin
        store = RedisWindow(self.link, name, rate.limit, period, horizon=self.horizon)
        limiter = WindowLimiter(rate, margin=margin, store=store)
        self._windows.append((limiter, store))
        return limiter

    def slots(self, capacity: int | None) -> SharedSlots | Slots:
        """In-flight leases shared by every client of the key (no cap: local slots)."""
        if capacity is None:
            return Slots(None)
        slots = SharedSlots(self.link, capacity)
        self._slots.append(slots)
        return slots

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Join: register with Redis and start the heartbeat and the limiters' tasks.

        Raises:
            CoordinationError: Redis cannot be reached or refuses us.
        """
        link = self.link
        if link.state != "new":
            raise ClientClosedError("a client can be opened only once")
        try:
            link.peers, _, marked, leases, longest = await self._beat()
        except RedisError as exc:
            link.state = "closed"
            await link.redis.aclose()
            text = str(exc)
            if any(s in text for s in ("NOAUTH", "HELLO must be", "Authentication required")):
                text = f"it asks for a password (redis://:PASSWORD@host/0): {text}"
            raise CoordinationError(
                f"cannot reach Redis at {link.url} to share the limits: {text}"
            ) from exc
        link.state = "open"
        link.heard_hold(longest)
        self._others_hold(leases)
        link.marked(marked)  # (others on probation: so is this one, from the start)
        try:  # (each learns the epoch of its data: lost later, it knows at once)
            await self._check_epochs()
        except RedisError as exc:
            link.lost(exc)
        self._task = asyncio.ensure_future(self._run())

    async def aclose(self) -> None:
        """Stop the tasks, hand back released slots, leave; held leases expire on their own.

        Leases still held (predictions from ``submit()`` never seen finished) are left
        to expire after ``lease_ttl``, as the server may still count those predictions.
        """
        link = self.link
        if link.state == "closed":
            return
        was_open, link.state = link.state == "open", "closed"
        self._fail(ClientClosedError("the client was closed while this call waited"))
        with anyio.CancelScope(shield=True):
            try:
                if self._task is not None:
                    self._task.cancel()
                    await asyncio.wait([self._task])
                    if not self._task.cancelled() and self._task.exception() is not None:
                        logger.error("coordination task failed", exc_info=self._task.exception())
                if was_open and link.online:
                    with anyio.move_on_after(self.config.timeout), contextlib.suppress(RedisError):
                        for _, store in self._windows:
                            await store.flush()
                        for slots in self._slots:
                            await slots.flush()
                        await link.redis.zrem(link.key("members"), link.owner)
                        await link.redis.zrem(link.key("queue"), link.owner)
            finally:
                await link.redis.aclose()

    def _fail(self, error: BaseException) -> None:
        for limiter, _ in self._windows:
            limiter.fail(error)
        for slots in self._slots:
            slots.fail(error)

    async def _run(self) -> None:
        pumps: list[Callable[[], Coroutine[Any, Any, None]]] = [self._heartbeats]
        pumps += [store.run for _, store in self._windows]
        pumps += [slots.run for slots in self._slots]
        try:
            async with anyio.create_task_group() as tg:
                for pump in pumps:
                    tg.start_soon(pump)
        except Exception as exc:  # a bug: nobody may wait forever for it
            self._fail(CoordinationError(f"coordination through {self.url} failed: {exc!r}"))
            raise

    # -- Redis away and back -----------------------------------------------------------

    def _go_local(self) -> None:
        """Redis stopped answering, or went on probation: every limiter keeps to its
        local share. On probation, a window's first two holds too: each other client
        learns of it at its next heartbeat (this one's marks it in Redis at its next)
        and keeps to its share from then on."""
        link = self.link
        extra = 2 * link.hold if link.on_probation else 0.0
        for limiter, store in self._windows:
            store.go_local(link.peers, extra=extra)
            limiter.wake()
        for slots in self._slots:
            slots.go_local(self.link.peers)

    def _reshare(self) -> None:
        """A client joined while each keeps to a local share (one that started during a
        probation): every share shrinks to the new count's, or the shares would add up to
        more than the limit once the newcomer's begins (after its window and two holds)."""
        for _, store in self._windows:
            store.reshare(self.link.peers)
        for slots in self._slots:
            slots.reshare(self.link.peers)

    def _others_hold(self, leases: int) -> None:
        """Redis counted ``leases`` live, this client's (just written back) included."""
        for slots in self._slots:
            slots.counted(leases)

    async def _check_epochs(self) -> None:
        """Whether Redis lost a window's log or the leases since this client last asked
        (each writes its own back, and holds every grant or slot, if so)."""
        for _, store in self._windows:
            await store.check()
        for slots in self._slots:
            await slots.check()

    async def _beat(self) -> tuple[int, bool, float, int, float]:
        """Renew, and mark this client's probation; how many clients are alive, whether
        Redis still knew this one, the key's probation left (seconds, 0: none), the
        leases live (every client's), and the longest hold of a live client (seconds)."""
        held = [lease for slots in self._slots for lease in slots.held]
        link = self.link
        args = [round(self.config.lease_ttl * 1e6), link.owner]
        args += [round(link.probation_left() * 1e6), round(link.own_hold * 1e6), *held]
        keys = [self.key("leases"), self.key("members"), self.key("probation")]
        keys.append(self.key("holds"))
        reply = await link.call(_scripts.HEARTBEAT, keys, args)
        peers, known, marked, leases, longest = reply
        return max(int(peers), 1), bool(known), int(marked) / 1e6, int(leases), int(longest) / 1e6

    async def _heartbeats(self) -> None:
        """Renew membership and leases; while Redis is away, try to rejoin.

        A Redis that forgot this client (restarted between two calls, say) is told this
        process's grants of the last window again, as on a rejoin; one that lost a
        window's log or the leases (a new epoch, :meth:`RedisWindow.check`) holds every
        grant or slot until every live process has written its own back. On probation
        (``_probation``: Redis flapped) it goes on writing them back and checking, and
        rejoins once the probation has run out (here and in Redis's mark).
        """
        link = self.link
        while True:
            await anyio.sleep(self.heartbeat)
            try:
                peers, known, marked, leases, longest = await self._beat()
                if not known:  # (Redis lost this client: restarted, flushed, evicted)
                    link.data_lost()
                if not link.online or not known:
                    for _, store in self._windows:
                        await store.replay()
                await self._check_epochs()
            except RedisError as exc:
                link.lost(exc)
                continue
            self._others_hold(leases)
            link.heard_hold(longest)
            link.count(peers, settled=True)
            link.marked(marked)
            if not link.online and not link.on_probation:
                link.online = True
                logger.warning("Redis at %s answers again; limits are shared again", link.url)
                for limiter, store in self._windows:
                    store.rejoined()
                    limiter.wake()
                for slots in self._slots:
                    slots.rejoined()
