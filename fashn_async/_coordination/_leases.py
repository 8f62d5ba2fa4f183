"""In-flight slots shared through Redis: leases that expire if their process dies."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque

import anyio
from redis.exceptions import RedisError

from fashn_async._coordination import _scripts
from fashn_async._coordination._link import Epoch, Link
from fashn_async._limits import Lease
from fashn_async._redact import safe_repr

__all__ = ["SharedSlots", "local_room"]


def local_room(share: int, capacity: int, others: int) -> int:
    """Leases a client keeping to a local ``share`` of ``capacity`` may hold, the others
    holding ``others``: its share, less what they hold beyond theirs (never below 0).
    Each client holding no more keeps the sum within ``capacity``. Pure."""
    return max(min(share, capacity - others), 0)


class SharedSlots:
    """At most ``capacity`` leases held at once by all the clients of one key.

    A lease is a member of a Redis sorted set scored by its expiry; the coordinator's
    heartbeat renews the leases this process holds, so those of a killed process vanish
    within ``lease_ttl``. Waiters of this process are served in arrival order by one task
    (:meth:`run`) that asks Redis for the head waiter only; processes waiting for a slot
    queue in Redis in arrival order, so one busy process cannot keep handing its own
    slots to itself. A slot another process frees is noticed within ``poll_interval``.

    While Redis is away, this process holds at most a ``1/peers`` share of the capacity
    (the leases it holds count), and no more than the others leave: others may hold more
    than their shares when the local shares begin (they took them through Redis) or when
    a client joins a probation, so what the heartbeats last counted others holding comes
    out of the capacity (:func:`local_room`). Once Redis is back, the heartbeat writes
    its leases back, and the share keeps applying, on top of Redis, for one more
    ``lease_ttl``. A Redis that lost the leases without a call failing shows it by a new
    epoch (``LEASE_ACQUIRE``): no slot is taken by anyone for the link's ``hold``, by
    when every live process has written its leases back (the heartbeat).
    """

    def __init__(self, link: Link, capacity: int) -> None:
        self.capacity = capacity
        self._co = link
        self._keys = [link.key("leases"), link.key("queue"), link.key("members")]
        self._keys += [link.key("leases:hold")]
        self._epoch = Epoch(link, "the in-flight leases")
        self._held: set[str] = set()
        self._waiters: deque[asyncio.Future[str]] = deque()
        self._released: list[str] = []
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._share: int | None = None  # at most this many held: Redis is or was away
        self._others: deque[tuple[float, int]] = deque()  # (when, leases others held)
        self._share_until = math.inf
        self._queued = False  # whether this process has a place in the queue in Redis
        self._failed: BaseException | None = None

    @safe_repr
    def __repr__(self) -> str:
        where = "shared" if self._share is None else f"local share {self._share}"
        return (
            f"<SharedSlots {len(self._held)} held of {self.capacity} {where} "
            f"waiting={len(self._waiters)}>"
        )

    @property
    def in_use(self) -> int:
        """Leases this process holds."""
        return len(self._held)

    @property
    def waiting(self) -> int:
        """How many callers of this process wait for a slot."""
        return sum(1 for future in self._waiters if not future.done())

    @property
    def held(self) -> list[str]:
        """The ids of the leases this process holds."""
        return sorted(self._held)

    async def acquire(self) -> str:
        """Wait for a slot free across all processes; returns its lease."""
        self._co.check_open()
        if self._failed is not None:
            raise self._failed
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if self._waiters[0] is future:
            self._wake.set()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result())  # granted, never used
            elif future in self._waiters:
                self._waiters.remove(future)
                self._wake.set()
            raise

    def release(self, lease: Lease) -> None:
        """Give the slot of ``lease`` back; Redis hears of it from :meth:`run`."""
        if isinstance(lease, str) and lease in self._held:
            self._held.discard(lease)
            if self._co.online:
                self._released.append(lease)
            self._wake.set()

    # -- the task that talks to Redis --------------------------------------------------

    async def run(self) -> None:
        """Serve the head waiter and forward releases; owned by the coordinator."""
        while True:
            self._wake.clear()
            while self._waiters and self._waiters[0].done():
                self._waiters.popleft()
            share = self._current_share()
            room = share is None or len(self._held) < local_room(
                share, self.capacity, max((others for _, others in self._others), default=0)
            )
            if not self._co.online:
                if self._waiters and room:
                    self._grant(f"{self._co.owner}.{next(self._ids)}")
                    continue
                await self._wake.wait()
                continue
            try:
                await self.flush()
                if not (self._waiters and room):
                    if self._queued:  # nobody here can take a slot now: let the others by
                        self._queued = False
                        await self._co.zrem(self._keys[1], [self._co.owner])
                    share_ends = self._share_until - self._now() if share is not None else math.inf
                    with anyio.move_on_after(share_ends):
                        await self._wake.wait()
                    continue
                lease = f"{self._co.owner}.{next(self._ids)}"
                args = [
                    self.capacity,
                    round(self._co.config.lease_ttl * 1e6),
                    lease,
                    self._co.owner,
                    *self._epoch.args(lease),
                ]
                result = await self._co.call(_scripts.LEASE_ACQUIRE, self._keys, args)
                granted, _, epoch, live, version, leases = result
            except RedisError as exc:
                self._co.lost(exc)
                continue
            self._epoch.seen(epoch, version, forgot=granted == 2)
            self._co.count(int(live))
            if granted == 2:  # Redis lost the leases: every process holds until all wrote
                granted = 0  # theirs back (the heartbeat), then asks again
            self._queued = not granted
            if granted:
                self._grant(lease)
            self.counted(int(leases), wake=False)  # (it asks again after poll_interval)
            if granted:
                continue
            with anyio.move_on_after(self._co.config.poll_interval):
                await self._wake.wait()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _current_share(self) -> int | None:
        if self._share is not None and self._co.online and self._now() >= self._share_until:
            self._share = None
        return self._share

    def _grant(self, lease: str) -> None:
        self._held.add(lease)
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(lease)
                return
        self.release(lease)  # every waiter left while we asked

    async def flush(self) -> None:
        """Remove the leases released since the last call from Redis."""
        if self._released:
            leases, self._released = self._released, []
            await self._co.zrem(self._keys[0], leases)

    # -- Redis away and back -----------------------------------------------------------

    def counted(self, leases: int, *, wake: bool = True) -> None:
        """Redis counted ``leases`` live, every client's (at a heartbeat, or asked for a
        slot): the others hold those not this process's (held, or released and not yet
        removed from Redis). The largest count of the others' in the last ``lease_ttl``
        stands (a Redis that just lost the leases counts too few, until every client has
        written its own back), and the last one does while none comes (Redis away).
        Wakes :meth:`run` (a local share may have room now), unless ``wake`` is False:
        its own ask's count, which must not wake it from its wait of ``poll_interval``
        (it did: a process waiting for a slot asked Redis again at once, thousands of
        times a second)."""
        now = self._now()
        others = max(leases - len(self._held) - len(self._released), 0)
        self._others.append((now, others))
        while self._others[0][0] < now - self._co.config.lease_ttl:
            self._others.popleft()
        if wake:
            self._wake.set()

    def reshare(self, peers: int) -> None:
        """More clients than when the local share was taken: it shrinks to ``1/peers``
        (leases held count; none more until they fit under it)."""
        if self._share is not None:
            self._share = min(self._share, max(1, self.capacity // peers))

    def go_local(self, peers: int) -> None:
        """Redis is gone: hold at most a 1/peers share of the capacity."""
        self._share = max(1, self.capacity // peers)
        self._share_until = math.inf
        self._released.clear()
        self._queued = False
        self._wake.set()

    async def check(self) -> None:
        """Whether Redis lost the leases since this process last asked for a slot (at
        each heartbeat, which writes this process's leases back): if so, no process
        takes a slot until all have."""
        await self._epoch.check(self._keys[::3])

    def rejoined(self) -> None:
        """Redis is back, our leases written back: keep the share one ``lease_ttl`` more.

        By then every live process has rejoined too (they try every ``lease_ttl / 3``)
        and written its leases back; until then Redis does not count them all.
        """
        self._share_until = self._now() + self._co.config.lease_ttl
        self._wake.set()

    def fail(self, error: BaseException) -> None:
        """Closed, or broken by a bug: every waiter, now and later, gets ``error``."""
        self._failed = error
        waiters, self._waiters = self._waiters, deque()
        for future in waiters:
            if not future.done():
                future.set_exception(error)
