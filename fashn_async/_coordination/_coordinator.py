"""The per-client coordinator: the Redis connection, its keys, heartbeat and fallback."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from fashn_async._coordination import _scripts
from fashn_async._coordination._config import masked_url
from fashn_async._coordination._leases import SharedSlots
from fashn_async._coordination._window import SharedWindowLimiter
from fashn_async._limits import Rate, Slots
from fashn_async.errors import ClientClosedError, ConfigurationError, CoordinationError

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from fashn_async._coordination._config import RedisCoordination

__all__ = ["Coordinator", "key_namespace"]

logger = logging.getLogger("fashn_async")

#: Redis calls retried by the client itself before Redis counts as gone.
_RETRIES = 2


def key_namespace(prefix: str, api_key: str) -> str:
    """The start of every key of one API key: a hash of it, never the key.

    The hash sits in braces (a Redis Cluster hash tag), so every key of one API key lands
    on one node and one Lua script may touch them all.
    """
    digest = hashlib.sha256(f"fashn-async:{api_key}".encode()).hexdigest()[:16]
    return f"{prefix}:{{{digest}}}"


class Coordinator:
    """Limiters of one client, shared through Redis with every client of the same key.

    Made by :meth:`RedisCoordination.coordinator`; the client starts it in
    ``__aenter__`` and closes it in ``aclose``. It is the engine's limiter backend.
    """

    def __init__(self, config: RedisCoordination, *, api_key: str) -> None:
        self.config = config
        self.url = masked_url(config.url)
        self.namespace = key_namespace(config.prefix, api_key)
        #: This client's name in Redis (a random id, nothing about the host).
        self.owner = secrets.token_hex(6)
        #: Whether Redis answers; while not, each limiter keeps to a local share.
        self.online = True
        #: Clients of this key seen alive at the last heartbeat (this one included).
        self.peers = 1
        self.heartbeat = config.lease_ttl / 3
        try:
            self._redis = aioredis.Redis.from_url(
                config.url,
                socket_timeout=config.timeout,
                socket_connect_timeout=config.timeout,
                retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), _RETRIES),
            )
        except ValueError:  # its message may quote the URL, password and all
            raise ConfigurationError(f"the Redis URL {self.url!r} cannot be read") from None
        self._scripts: dict[str, AsyncScript] = {}
        self._windows: list[SharedWindowLimiter] = []
        self._slots: list[SharedSlots] = []
        self._task: asyncio.Future[None] | None = None
        self._state: Literal["new", "open", "closed"] = "new"

    def __repr__(self) -> str:
        state = "online" if self.online else f"local share of 1/{self.peers}"
        return f"<Coordinator {self.url} {self._state} {state} peers={self.peers}>"

    # -- the backend the engine asks for its limiters ----------------------------------

    def window(
        self,
        name: Literal["submit", "status"],
        rate: Rate,
        *,
        margin: float,
        burst: int | None = None,
    ) -> SharedWindowLimiter:
        """A rolling-window limiter shared by every client of the key.

        ``burst`` (pacing) is not applied across processes: their pollers are not in step.
        """
        limiter = SharedWindowLimiter(self, name, rate, margin=margin)
        self._windows.append(limiter)
        return limiter

    def slots(self, capacity: int | None) -> SharedSlots | Slots:
        """In-flight leases shared by every client of the key (no cap: local slots)."""
        if capacity is None:
            return Slots(None)
        slots = SharedSlots(self, capacity)
        self._slots.append(slots)
        return slots

    # -- what the limiters use ---------------------------------------------------------

    def key(self, name: str) -> str:
        """The Redis key ``name`` of this API key."""
        return f"{self.namespace}:{name}"

    async def call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the Lua scripts (loaded once, by digest after that)."""
        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self._redis.register_script(script)
        return await registered(keys=keys, args=args)

    async def zrem(self, key: str, members: list[str]) -> None:
        """Remove ``members`` from the sorted set ``key``."""
        if members:
            await self._redis.zrem(key, *members)

    def check_open(self) -> None:
        """Raise unless started and not closed."""
        if self._state != "open":
            raise ClientClosedError("the client is not open: use `async with AsyncFashn(...)`")

    def lost(self, error: BaseException) -> None:
        """Redis stopped answering: every limiter falls back to its local share."""
        if not self.online or self._state != "open":
            return
        self.online = False
        logger.warning(
            "Redis at %s is not answering (%s); each of the %d clients of this API key "
            "keeps to a 1/%d share of the limits until it is back, starting after one "
            "window without grants",
            self.url,
            type(error).__name__,
            self.peers,
            self.peers,
        )
        for limiter in self._windows:
            limiter.go_local(self.peers)
        for slots in self._slots:
            slots.go_local(self.peers)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Join: register with Redis and start the heartbeat and the limiters' tasks.

        Raises:
            CoordinationError: Redis cannot be reached or refuses us.
        """
        if self._state != "new":
            raise ClientClosedError("a client can be opened only once")
        try:
            self.peers, _ = await self._beat()
        except RedisError as exc:
            self._state = "closed"
            await self._redis.aclose()
            raise CoordinationError(
                f"cannot reach Redis at {self.url} to share the limits: {exc}"
            ) from exc
        self._state = "open"
        self._task = asyncio.ensure_future(self._run())

    async def aclose(self) -> None:
        """Stop the tasks, hand back released slots, leave; held leases expire on their own.

        Leases still held (predictions from ``submit()`` never seen finished) are left
        to expire after ``lease_ttl``, as the server may still count those predictions.
        """
        if self._state == "closed":
            return
        was_open, self._state = self._state == "open", "closed"
        with anyio.CancelScope(shield=True):
            try:
                if self._task is not None:
                    self._task.cancel()
                    await asyncio.wait([self._task])
                    if not self._task.cancelled() and self._task.exception() is not None:
                        logger.error("coordination task failed", exc_info=self._task.exception())
                closed = ClientClosedError("the client was closed while this call waited")
                for limiter in self._windows:
                    limiter.fail(closed)
                for slots in self._slots:
                    slots.fail(closed)
                if was_open and self.online:
                    with anyio.move_on_after(self.config.timeout), contextlib.suppress(RedisError):
                        for limiter in self._windows:
                            await limiter.flush()
                        for slots in self._slots:
                            await slots.flush()
                        await self._redis.zrem(self.key("members"), self.owner)
                        await self._redis.zrem(self.key("queue"), self.owner)
            finally:
                await self._redis.aclose()

    async def _run(self) -> None:
        pumps: list[Callable[[], Coroutine[Any, Any, None]]] = [self._heartbeats]
        pumps += [limiter.run for limiter in self._windows]
        pumps += [slots.run for slots in self._slots]
        try:
            async with anyio.create_task_group() as tg:
                for pump in pumps:
                    tg.start_soon(pump)
        except Exception as exc:  # a bug: nobody may wait forever for it
            error = CoordinationError(f"coordination through {self.url} failed: {exc!r}")
            for limiter in self._windows:
                limiter.fail(error)
            for slots in self._slots:
                slots.fail(error)
            raise

    async def _beat(self) -> tuple[int, bool]:
        """Renew; how many clients are alive, and whether Redis still knew this one."""
        held = [lease for slots in self._slots for lease in slots.held]
        args = [round(self.config.lease_ttl * 1e6), self.owner, *held]
        keys = [self.key("leases"), self.key("members")]
        peers, known = await self.call(_scripts.HEARTBEAT, keys, args)
        return max(int(peers), 1), bool(known)

    async def _heartbeats(self) -> None:
        """Renew membership and leases; while Redis is away, try to rejoin.

        A Redis that forgot this client (restarted between two calls, say) is told this
        process's grants of the last window again, as on a rejoin.
        """
        while True:
            await anyio.sleep(self.heartbeat)
            try:
                peers, known = await self._beat()
                if not self.online or not known:
                    for limiter in self._windows:
                        await limiter.replay()
            except RedisError as exc:
                self.lost(exc)
                continue
            self.peers = peers
            if not self.online:
                self.online = True
                logger.warning("Redis at %s answers again; limits are shared again", self.url)
                for limiter in self._windows:
                    limiter.rejoined()
                for slots in self._slots:
                    slots.rejoined()
