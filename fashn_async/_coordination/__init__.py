"""Scale-out: one API key's limits shared by many processes through Redis.

``AsyncFashn(coordination="redis://...")`` swaps the engine's limiter backend: the submit
limiter, the status budget and the in-flight cap live in Redis, keyed by a hash of the
API key (``fashn:{<sha256 prefix>}:submit``), never the key itself. Choices:

- **One algorithm, a Redis store.** The limiter is the same :class:`WindowLimiter` as
  in a single process; only its store differs (``_window.RedisWindow``). Every grant is
  decided by one Lua script on the Redis server, dated by Redis ``TIME``: the rolling
  window holds across hosts whatever their clocks say. A grant log is a sorted set of
  ``<id>:<amount>`` members scored in microseconds; the script trims it, sums it and
  either adds the grant or answers how long until it fits. Nothing polls the window: the
  waiter sleeps exactly that long (or until something local changes).
- **Only the head asks.** Callers of one process queue locally in priority and arrival
  order; only the head of the queue asks Redis. Across processes the window goes to
  whoever asks first once there is room; in-flight slots go to waiting processes in
  arrival order (a queue in Redis).
- **A 429 pauses everyone.** ``pause()`` writes a pause-until time that the grant script
  checks, so the 429 one process saw stops every process's next grant.
- **Leases.** An in-flight slot is a lease scored by its expiry; a heartbeat task renews
  the leases of live processes every ``lease_ttl / 3``, so a killed process's slots come
  back within ``lease_ttl``.
- **Redis down at start:** ``AsyncFashn.__aenter__`` raises CoordinationError naming the
  URL (password masked). **Redis gone mid-run: fall back, do not fail.** Each process
  keeps to a ``1/peers`` share of every limit (``peers``: clients of the key alive at the
  last heartbeat), starting after one window without submissions, as grants made through
  Redis just before it went still count on the API's side. When Redis answers again a
  process writes its recent grants and leases back and keeps its share for one more
  window, so processes that rejoin within a window of each other never overshoot. A
  share below one request's ``num_samples`` is rounded up to it; the API's 429 answer
  then pauses that process as usual. This keeps a web service serving, slower, rather
  than failing every request while Redis restarts.
- **Tasks are owned.** The coordinator starts its tasks (heartbeat, and one per store
  and slot gate writing what changed here) in ``__aenter__`` and cancels and awaits them
  in ``aclose``; leaving releases nothing still held (a ``submit()`` never
  seen finished), which expires after ``lease_ttl``.

Every process must use the same :class:`~fashn_async.Limits`. Needs the ``redis`` extra
(redis-py's asyncio client) and Redis 5 or later.

Modules, each importing only those listed before it: ``_scripts``
(the Lua), ``_link`` (connection, keys, clock, online state), ``_window`` (the Redis
store) and ``_leases`` (shared slots), ``_coordinator`` (makes them, heartbeat,
fallback), ``_config`` (the public option, which makes the coordinator).
"""

from fashn_async._coordination._config import RedisCoordination

__all__ = ["RedisCoordination"]
