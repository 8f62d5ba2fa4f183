"""The link to Redis that the shared limiters use: connection, keys, scripts, clock, state.

The stores (``_window``) and leases (``_leases``) know Redis only through :class:`Link`;
the coordinator (``_coordinator``) makes the link and them, so imports run one way.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from fashn_async._coordination import _scripts
from fashn_async._coordination._probation import Probation
from fashn_async._redact import Secret, safe_repr, shown_url
from fashn_async.errors import ClientClosedError, ConfigurationError

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["Epoch", "Link", "Settings", "key_namespace", "text"]

logger = logging.getLogger("fashn_async")

#: Redis calls retried by the client itself before Redis counts as gone.
_RETRIES = 2
#: The first probation (:mod:`._probation`), in holds: 10 (2 minutes by default, two
#: submit windows). A restart or a flush loses each piece of data once; the same piece
#: lost again within it is a Redis that cannot keep the data. Losses further apart
#: each cost a hold (at most a tenth of the time) and are shared through.
_PROBATION_HOLDS = 10
#: The longest probation, in first ones (16 minutes by default).
_PROBATION_CAP = 8


class Settings(Protocol):
    """What the link reads of :class:`~fashn_async.RedisCoordination`."""

    @property
    def url(self) -> str: ...
    @property
    def lease_ttl(self) -> float: ...
    @property
    def poll_interval(self) -> float: ...
    @property
    def timeout(self) -> float: ...
    @property
    def prefix(self) -> str: ...


def key_namespace(prefix: str, api_key: str) -> str:
    """The start of every key of one API key: a hash of it, never the key.

    The hash sits in braces (a Redis Cluster hash tag), so every key of one API key lands
    on one node and one Lua script may touch them all.
    """
    digest = hashlib.sha256(f"fashn-async:{api_key}".encode()).hexdigest()[:16]
    return f"{prefix}:{{{digest}}}"


def text(reply: object) -> str:
    """A script's string reply as text (redis-py gives bytes without ``decode_responses``)."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


class Link:
    """One client's connection to Redis, and whether Redis answers.

    Args:
        config: The coordination settings.
        api_key: Hashed into every key's name, never stored.
        clock: Seconds, as the scripts' "now" (tests on fake loop time); ``None``, the
            default, dates everything by the Redis server's ``TIME``.
    """

    def __init__(
        self,
        config: Settings,
        *,
        api_key: str | Secret,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.url = shown_url(config.url)
        self.namespace = key_namespace(  # (no local holds the key: frame locals get shown)
            config.prefix, api_key.reveal() if isinstance(api_key, Secret) else api_key
        )
        #: This client's name in Redis (a random id, nothing about the host).
        self.owner = secrets.token_hex(6)
        #: Whether Redis answers; while not, each limiter keeps to a local share.
        self.online = True
        #: The longest hold of the other live clients, seconds (:meth:`heard_hold`).
        self.longest_hold = 0.0
        #: Clients of this key alive (this one included), as last counted
        #: (:meth:`count`): sets the share each keeps to while Redis is away.
        self.peers = 1
        #: Loop time Redis was last found to have lost data (:meth:`data_lost`).
        self.lost_at = -math.inf
        self.state: Literal["new", "open", "closed"] = "new"
        #: Called once when Redis stops answering or goes on probation (the coordinator
        #: moves to local shares).
        self.on_lost: Callable[[], None] = lambda: None
        #: Called when :attr:`peers` rises while each limiter keeps to a local share (the
        #: coordinator shrinks the shares).
        self.on_joined: Callable[[], None] = lambda: None
        #: Whether Redis, though it answers, flapped: then :attr:`online` stays False.
        self.probation = Probation(
            _PROBATION_HOLDS * self.hold, _PROBATION_HOLDS * _PROBATION_CAP * self.hold
        )
        self._clock = clock
        # Raised outside the except blocks: redis-py's errors may quote the URL.
        problem = None
        try:
            self.redis = aioredis.Redis.from_url(
                config.url,
                socket_timeout=config.timeout,
                socket_connect_timeout=config.timeout,
                retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), _RETRIES),
            )
            pool = self.redis.connection_pool
            pool.connection_class(**pool.connection_kwargs)  # (redis-py checks at first use)
        except ValueError:  # its message may quote the URL, password and all
            problem = "cannot be read"
        except TypeError as exc:  # an option in its query no connection takes
            problem = f"has an option redis-py does not know: {str(exc).rpartition(' ')[2]}"
        except RedisError as exc:  # an option's value redis-py refuses (?protocol=9)
            problem = f"has an option redis-py refuses ({type(exc).__name__})"
        if problem is not None:
            raise ConfigurationError(f"the Redis URL {self.url!r} {problem}")
        self._scripts: dict[str, AsyncScript] = {}

    @safe_repr
    def __repr__(self) -> str:
        return f"<Link {self.url} {self.state} online={self.online} {self.probation!r}>"

    @property
    def own_hold(self) -> float:
        """This client's part of :attr:`hold`: its heartbeat, ``lease_ttl / 3``, and a
        call's ``timeout``, seconds."""
        return self.config.lease_ttl / 3 + self.config.timeout

    @property
    def hold(self) -> float:
        """Seconds nothing is granted after Redis lost its data: by then every live
        client has written its own back and counted itself in again, at its next
        heartbeat: the longest :attr:`own_hold` of the live clients, as the heartbeats
        last told it (clients whose ``lease_ttl`` or ``timeout`` differ, a rolling
        deploy changing them, say, hold as long as the slowest)."""
        return max(self.own_hold, self.longest_hold)

    def heard_hold(self, longest: float) -> None:
        """A heartbeat's longest hold of the live clients, seconds. It may fall (a slow
        client left), but not within a :attr:`hold` of a loss of data, while the others
        are still telling theirs again (as :meth:`count`)."""
        now = asyncio.get_running_loop().time()
        if now - self.lost_at >= self.hold:
            self.longest_hold = longest
        else:
            self.longest_hold = max(self.longest_hold, longest)

    def count(self, live: int, *, settled: bool = False) -> None:
        """Take a count of the key's live clients from Redis. A grant or a slot only
        raises :attr:`peers` (a client that joined); a heartbeat (``settled``) may lower
        it (one that left), but not within a :attr:`hold` of a loss of data, while the
        others are still counting themselves in: a count that fell with the data would
        leave each client too large a share were Redis to go away then. A rise while
        the limiters keep to local shares calls :attr:`on_joined`."""
        now, before = asyncio.get_running_loop().time(), self.peers
        if settled and now - self.lost_at >= self.hold:
            self.peers = max(live, 1)
        else:
            self.peers = max(self.peers, live, 1)
        if self.peers > before and not self.online and self.state == "open":
            self.on_joined()  # (a client started during a probation: the shares shrink)

    @property
    def on_probation(self) -> bool:
        """Whether Redis, though it may answer, is not used for grants (it flapped)."""
        return self.probation.active(asyncio.get_running_loop().time())

    def probation_left(self) -> float:
        """Seconds this client's probation has still to run (0: none)."""
        return max(self.probation.until - asyncio.get_running_loop().time(), 0.0)

    def data_lost(self, what: str | None = None) -> None:
        """Redis lost data: ``what`` (a new epoch of it), or this client (``None``: no
        longer known to it). A loss of ``what`` is logged, unless on probation, and
        begins one when it is the second within a period."""
        now = self.lost_at = asyncio.get_running_loop().time()
        if what is None:
            return
        quiet = self.on_probation
        since = self.probation.trouble(what, now)
        if since is not None:
            self._suspend(f"lost {what} again {since:.1f} s after the last time")
        elif not quiet:
            logger.warning(
                "Redis at %s lost %s (a restart, a flush, an eviction): nothing is "
                "granted from it for %.1f s while every process writes its own back",
                self.url,
                what,
                self.hold,
            )

    def marked(self, left: float) -> None:
        """Another client put Redis on probation, ``left`` seconds more (its heartbeat's
        mark in Redis): so does this one, or its grants through Redis and the others'
        local shares could add up to more than the limit."""
        if left > 0 and self.state == "open":
            now = asyncio.get_running_loop().time()
            if self.probation.join(now + left, now):
                self._suspend("is on probation for another client of this API key")

    def _suspend(self, reason: str) -> None:
        """Begin a probation: grants from the local share, as while Redis is away."""
        was_online, self.online = self.online, False
        logger.warning(
            "Redis at %s %s (a tiny maxmemory evicting keys? repeated flushes or "
            "restarts?): on probation for %.0f s; each of the %d clients of this API key "
            "keeps to a 1/%d share of the limits, starting after one window and %.0f s "
            "without grants, until Redis has kept its data and answered that long",
            self.url,
            reason,
            self.probation.period,
            self.peers,
            self.peers,
            2 * self.hold,
        )
        if was_online:
            self.on_lost()

    def key(self, name: str) -> str:
        """The Redis key ``name`` of this API key."""
        return f"{self.namespace}:{name}"

    async def call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the Lua scripts (loaded once, by digest after that) on our clock."""
        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self.redis.register_script(script)
        clock = "" if self._clock is None else round(self._clock() * 1e6)
        return await registered(keys=keys, args=[clock, *args])

    async def zrem(self, key: str, members: list[str]) -> None:
        """Remove ``members`` from the sorted set ``key``."""
        if members:
            await self.redis.zrem(key, *members)

    def check_open(self) -> None:
        """Raise unless started and not closed."""
        if self.state != "open":
            raise ClientClosedError("the client is not open: use `async with AsyncFashn(...)`")

    def lost(self, error: BaseException) -> None:
        """Redis stopped answering: every limiter falls back to its local share (the
        second time within a probation period, a probation begins)."""
        if self.state != "open":
            return
        now = asyncio.get_running_loop().time()
        if not self.online:
            if self.on_probation:  # (Redis must answer for a whole period)
                self.probation.trouble("answers", now)
            return
        since = self.probation.trouble("answers", now)
        if since is not None:
            why = f"stopped answering ({type(error).__name__}) again {since:.1f} s after"
            self._suspend(f"{why} the last time")
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
        self.on_lost()


class Epoch:
    """The epoch of one piece of data in Redis (a window's log, the leases) as this
    client last saw it: how a loss of that data shows (``epoch_of`` in ``_scripts``).

    Args:
        link: The client's link.
        what: The data, for the warning (``"the submit window"``).
    """

    def __init__(self, link: Link, what: str) -> None:
        self.link, self.what = link, what
        self.known = ""  # ("": none seen yet)
        #: Its version as last seen: the grants taken from it (a lower one of the same
        #: epoch is an older copy of the data, put back: a loss too).
        self.version = 0
        self._tokens = itertools.count(1)

    @safe_repr
    def __repr__(self) -> str:
        return f"<Epoch of {self.what} {self.known!r}>"

    def args(self, token: str) -> list[object]:
        """A script's arguments for it: the epoch known, ``token`` for a new one, the
        hold (us) after a loss, and the epoch's version known."""
        return [self.known, token, round(self.link.hold * 1e6), self.version]

    def seen(self, epoch: object, version: object, *, forgot: bool) -> None:
        """Note a script's answer: the epoch, its version, and whether the one known was
        lost (then the link hears of it, and logs it). Two calls in flight at once (a
        grant and the heartbeat's check) may both find the one known lost: one loss,
        heard once; and their versions may come back in either order: the higher
        stands."""
        epoch, known = text(epoch), self.known
        self.known = epoch
        seen = int(text(version))
        self.version = seen if epoch != known else max(self.version, seen)
        if forgot and epoch != known:
            self.link.data_lost(self.what)

    async def check(self, keys: list[str]) -> bool:
        """Whether the data at ``keys`` (it, and its pause or hold key) was lost since
        this client last saw its epoch (at each heartbeat: an idle client learns of it).

        Raises:
            RedisError: Redis did not answer.
        """
        token = f"{self.link.owner}.e{next(self._tokens)}"
        epoch, forgot, version = await self.link.call(_scripts.EPOCH, keys, self.args(token))
        self.seen(epoch, version, forgot=bool(forgot))
        return bool(forgot)
