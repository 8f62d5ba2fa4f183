"""Limits shared through a real redis-server, by clients in this process (real time).

Each coordinator has its own Redis connections and owner id, exactly as a client in
another process would; the multi-process runs are in test_redis_scaleout.py. What is
about Redis itself runs here, on real time, asserting only orders, counts and lower
bounds (never "it took at most"). The window's arithmetic in the scripts is checked on
a clock the test sets in test_window_store.py, and the limiter algorithm over a store on
fake loop time in test_limits.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_support import RedisServer, free_port

from fashn_async import AsyncFashn, Limits, Polling, Rate, RedisCoordination, TryOnRequest
from fashn_async._coordination import _scripts
from fashn_async._coordination._coordinator import Coordinator
from fashn_async._coordination._leases import SharedSlots
from fashn_async._coordination._link import key_namespace
from fashn_async._limits import WindowLimiter
from fashn_async.errors import ClientClosedError, ConfigurationError, CoordinationError
from fashn_async.testing import Emulator, EmulatorConfig

pytestmark = pytest.mark.looptime(False)


@contextlib.asynccontextmanager
async def joined(
    url: str, *, rate: Rate | None = None, capacity: int | None = None, **options: Any
) -> AsyncIterator[tuple[Coordinator, WindowLimiter, SharedSlots]]:
    """A started coordinator with a shared submit limiter and shared slots."""
    api_key = options.pop("api_key", "key-1")
    coordinator = RedisCoordination(url, **options).coordinator(api_key=api_key)
    limiter = coordinator.window("submit", rate or Rate(5, 0.3), margin=0.03)
    slots = coordinator.slots(capacity or 1)
    assert isinstance(slots, SharedSlots)
    await coordinator.start()
    try:
        yield coordinator, limiter, slots
    finally:
        await coordinator.aclose()


async def until(check: Callable[[], Awaitable[bool] | bool], *, within: float = 2.0) -> None:
    """Wait (real time) until ``check()`` is true: state another task writes to Redis."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(0.005)


async def server_time(client: aioredis.Redis) -> int:
    """The Redis server's clock, in microseconds (what the scripts date grants by)."""
    seconds, micros = await client.time()
    return int(seconds) * 1_000_000 + int(micros)


def max_in_window(times: Sequence[float], window: float) -> int:
    """Most grants in any half-open window [t, t + window)."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times))


async def test_two_clients_share_one_rolling_window(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """Two clients of one key: never more than R in any window together, by Redis's clock.

    Each grant's date is read from the shared log in Redis (the server's clock, which the
    script decides by), not from when ``acquire`` returned here.
    """
    dated: dict[str, int] = {}  # log member -> the server's date of the grant, in µs
    async with (
        joined(redis_server.url) as (coordinator, first, _s1),
        joined(redis_server.url) as (_, second, _s2),
    ):
        log = coordinator.key("submit")

        async def read() -> bool:
            # Read often: the log drops a grant a window after its date. A grant whose
            # request is out is dated ahead until it is answered: read it once it is.
            now = await server_time(peek)
            for member, micros in await peek.zrangebyscore(log, "-inf", now, withscores=True):
                dated.setdefault(member, round(micros))
            return len(dated) == 20

        async def take(limiter: WindowLimiter) -> None:
            limiter.settle(await limiter.acquire(), counted=True)  # answered at once
            await limiter.store.flush()  # (its answer's date written now, not by the pump)
            await read()

        await asyncio.gather(*(take(limiter) for limiter in [first, second] * 10))
        await until(read)
    granted = list(dated.values())
    assert len(granted) == 20
    # The rate, 5 per 0.3 s, plus the margin; in whole µs, as Redis has them (no float
    # residue at a window's edge).
    assert max_in_window(granted, 330_000) == 5
    # 20 grants = 4 windows of 0.3 s + 0.03 s margin: the last at 3 windows at the earliest.
    # How close to that it comes (no slower than one client) is bench_scaleout's figure.
    assert max(granted) - min(granted) >= 990_000


async def test_a_slow_answer_dates_the_grant_for_every_client(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """A grant answered later is re-dated in Redis: the other client's wait grows with it."""
    rate = Rate(1, 100.0)
    async with (
        joined(redis_server.url, rate=rate) as (coordinator, first, _s1),
        joined(redis_server.url, rate=rate) as (_, second, _s2),
    ):
        log = coordinator.key("submit")
        grant = await first.acquire()
        [(member, dated_ahead)] = await peek.zrangebyscore(log, "-inf", "(inf", withscores=True)
        granted_at = dated_ahead - round(coordinator.horizon * 1e6)  # (dated ahead while out)
        first.settle(grant, counted=True)

        async def restamped() -> bool:
            return bool(await peek.zscore(log, member) != dated_ahead)

        await until(restamped)
        answered_at = await peek.zscore(log, member)
        before = await server_time(peek)
        nothing, wait = await second.store.take(1)
        after = await server_time(peek)
    assert nothing is None
    assert answered_at > granted_at
    # The other client's wait ends one window after the answer, not after the grant.
    window = round(100.03 * 1e6)
    assert before + round(wait * 1e6) <= answered_at + window <= after + round(wait * 1e6)


async def test_a_grant_that_got_no_answer_is_dated_later_in_redis(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """settle(answered=False) after 0.3 s out: re-dated at least 0.3 s past the moment it
    was given up (as long again as it was out), so at least 0.6 s past its grant."""
    async with joined(redis_server.url, rate=Rate(1, 100.0)) as (coordinator, first, _s1):
        log = coordinator.key("submit")
        grant = await first.acquire()
        [(member, dated_ahead)] = await peek.zrangebyscore(log, "-inf", "(inf", withscores=True)
        granted_at = dated_ahead - round(coordinator.horizon * 1e6)  # (dated ahead while out)
        await asyncio.sleep(0.3)  # (real time: Redis's clock runs on)
        first.settle(grant, counted=True, answered=False)

        async def restamped() -> bool:
            return bool(await peek.zscore(log, member) != dated_ahead)

        await until(restamped)
        dated = await peek.zscore(log, member)
    assert dated >= granted_at + 600_000


async def test_a_grant_whose_process_died_with_its_request_out_counts_for_the_horizon(
    redis_server: RedisServer,
) -> None:
    """A process that dies (its coordinator gone without settling) with a request out: the
    server may still act on that request up to twice the client's timeout later, so its
    grant keeps counting that long, and the next client waits for it (a horizon of 1 s
    here, 0.5 s timeout); before, it left a window after its last dating."""
    loop = asyncio.get_running_loop()
    url, rate = redis_server.url, Rate(1, 1.0)
    dying = RedisCoordination(url).coordinator(api_key="key-1", request_timeout=0.5)
    limiter = dying.window("submit", rate, margin=0.03)
    await dying.start()
    start = loop.time()
    await limiter.acquire()  # (its request out, never settled)
    await dying.aclose()  # (as a SIGKILL would leave Redis: the grant as it was dated)
    async with joined(url, rate=rate) as (_, second, _s2):
        second.settle(await second.acquire(), counted=True)
    assert loop.time() - start >= 1.0 + 1.0


async def test_a_grant_whose_request_is_out_longer_than_the_window_still_counts(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """Redis dates a grant when it is made; while its request is out (here 2.4 windows, an
    answer slower than the window) the client dates it "now" again every third of a
    window, so no other client gets its capacity: the server may still count it."""
    rate = Rate(1, 0.6)
    async with (
        joined(redis_server.url, rate=rate) as (_c1, first, _s1),
        joined(redis_server.url, rate=rate) as (_c2, second, _s2),
    ):
        grant = await first.acquire()
        for _ in range(30):  # 1.5 s of real time, 2.4 windows of 0.63 s
            await asyncio.sleep(0.05)
            nothing, wait = await second.store.take(1)
            assert nothing is None
            assert wait > 0
        first.settle(grant, counted=True)
        await second.acquire()  # one window after the answer


async def test_an_uncounted_grant_is_removed_from_redis(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """settle(counted=False) removes the grant from the shared log; this client goes at once.

    Another process waiting for that capacity sleeps until the time Redis last told it
    (there is no cross-process wake-up); uncounted grants are rare (a refused connection,
    a 429), so that costs little.
    """
    async with joined(redis_server.url, rate=Rate(1, 100.0)) as (coordinator, first, _s1):
        log = coordinator.key("submit")
        grant = await first.acquire()
        old = await peek.zrangebyscore(log, "-inf", "(inf")
        waiter = asyncio.ensure_future(first.acquire())
        await until(lambda: first.waiting == 1)
        first.settle(grant, counted=False)
        await waiter  # the window is 100 s: it would outlast the test's timeout
        new = await peek.zrangebyscore(log, "-inf", "(inf")
    assert len(old) == len(new) == 1
    assert old != new


async def test_a_pause_in_one_client_holds_every_client(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """A 429 seen by one client (pause) is shared at once and holds another's grants."""
    async with (
        joined(redis_server.url, rate=Rate(5, 100.0)) as (coordinator, first, _s1),
        joined(redis_server.url, rate=Rate(5, 100.0)) as (_, second, _s2),
    ):
        before = await server_time(peek)
        first.pause(50.0)
        # Written by the first client's own task, with nobody waiting there.
        await until(lambda: peek.exists(coordinator.key("submit:pause")))
        # The second client's next grant waits for the pause, though its window is empty.
        grant, wait = await second.store.take(1)
        after = await server_time(peek)
        assert grant is None
        # Paused for 50 s of the server's clock from a moment between before and after.
        assert 50e6 - (after - before) <= round(wait * 1e6) <= 50e6


async def test_a_redis_that_lost_its_data_is_told_the_window_again(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """Redis emptied between two calls: the next heartbeat writes this window's grants back."""
    loop = asyncio.get_running_loop()
    url, rate = redis_server.url, Rate(5, 1.0)
    async with (
        joined(url, rate=rate, lease_ttl=0.3) as (coordinator, first, _s1),
        joined(url, rate=rate, lease_ttl=0.3) as (_, second, _s2),
    ):
        start = loop.time()
        for _ in range(5):
            first.settle(await first.acquire(), counted=True)
        await peek.flushall()
        await until(lambda: peek.exists(coordinator.key("submit")))
        await second.acquire()
        assert loop.time() - start >= 1.0


async def test_a_client_that_joined_is_counted_at_the_next_grant_not_heartbeat(
    redis_server: RedisServer,
) -> None:
    """The clients of a key, whose count sets each one's share if Redis goes away, are
    read at every grant: a client that joins is counted by the others at their next
    grant (here long before their next heartbeat, 10 s away), so that an outage right
    after it joined does not leave shares adding up to more than the limit."""
    url = redis_server.url
    async with joined(url, lease_ttl=30.0) as (coordinator, first, slots):
        first.settle(await first.acquire(), counted=True)
        assert coordinator.peers == 1
        async with joined(url, lease_ttl=30.0):
            first.settle(await first.acquire(), counted=True)
            assert coordinator.peers == 2
            slots.release(await slots.acquire())
            assert coordinator.peers == 2


async def test_a_count_lost_with_redis_s_data_does_not_fall(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """The members set lost (a FLUSHALL, an eviction) and a grant asked before the others
    have counted themselves in again: the count stays 2, not 1 (were Redis to go away
    then, each client would keep to half, not all, of the limit); a later heartbeat may
    lower it once the others are back."""
    url = redis_server.url
    async with (
        joined(url, lease_ttl=30.0) as (coordinator, first, _s1),
        joined(url, lease_ttl=30.0),
    ):
        first.settle(await first.acquire(), counted=True)
        assert coordinator.peers == 2
        await peek.delete(coordinator.key("members"))
        first.settle(await first.acquire(), counted=True)
        assert coordinator.peers == 2


async def test_a_count_does_not_fall_at_a_rejoin_to_a_redis_that_lost_it(
    redis_server: RedisServer,
) -> None:
    """Redis restarted empty: the first client back finds itself alone in it, but its
    count stays 2 (the other is counting itself in again), from the restart on."""
    url, seen = redis_server.url, []
    async with (
        joined(url, lease_ttl=0.3) as (first, _w1, _s1),
        joined(url, lease_ttl=0.3) as (second, _w2, _s2),
    ):
        await until(lambda: first.peers == second.peers == 2)
        await asyncio.to_thread(redis_server.stop)
        await until(lambda: not first.online and not second.online)
        await asyncio.to_thread(redis_server.start)

        async def watch() -> None:
            while True:
                seen.append(min(first.peers, second.peers))
                await asyncio.sleep(0.001)

        watcher = asyncio.ensure_future(watch())
        await until(lambda: first.online and second.online, within=5.0)
        await asyncio.sleep(0.3)
        watcher.cancel()
    assert min(seen) == 2


async def test_a_grant_is_told_again_with_its_answer_s_date(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """Redis emptied after a grant's answer came 0.5 s after it was made: the grant is
    written back dated at its answer (as Redis had it), not when it was made, so the
    window it fills ends a window after the answer."""
    loop = asyncio.get_running_loop()
    url, rate = redis_server.url, Rate(2, 1.0)
    async with (
        joined(url, rate=rate, lease_ttl=0.3) as (coordinator, first, _s1),
        joined(url, rate=rate, lease_ttl=0.3) as (_, second, _s2),
    ):
        start = loop.time()
        grant = await first.acquire()
        await asyncio.sleep(0.5)
        first.settle(grant, counted=True)  # answered: dated now, in Redis
        await until(lambda: peek.exists(coordinator.key("submit")))
        await peek.flushall()
        await until(lambda: peek.exists(coordinator.key("submit")))  # (the heartbeat's)
        await second.acquire()
        await second.acquire()
        assert loop.time() - start >= 1.5


async def lose(peek: aioredis.Redis, loss: str, key: str) -> None:
    """Lose data as Redis may: ``flushall`` (a restart without persistence, FLUSHALL),
    ``key`` (a DEL, an eviction of that key), ``expiring`` (every key with an expiry:
    volatile eviction)."""
    if loss == "flushall":
        await peek.flushall()
    elif loss == "key":
        await peek.delete(key)
    else:
        for name in await peek.keys("*"):
            if await peek.pttl(name) > 0:
                await peek.delete(name)


@pytest.mark.parametrize("loss", ["flushall", "key", "expiring"])
async def test_a_redis_that_lost_its_data_grants_nothing_until_each_process_wrote_its_own(
    redis_server: RedisServer, peek: aioredis.Redis, loss: str
) -> None:
    """Redis lost the log (emptied, or the log alone deleted or evicted) and a client asks
    at once, before the other's heartbeat: it is not granted from what is left (the
    other's four still count on the API's side) but held until every live process has
    written its own grants back, and then waits for the window the five fill."""
    loop = asyncio.get_running_loop()
    url, rate, options = redis_server.url, Rate(5, 3.0), {"lease_ttl": 1.5, "timeout": 0.2}
    async with (
        joined(url, rate=rate, **options) as (coordinator, first, _s1),
        joined(url, rate=rate, **options) as (_, second, _s2),
    ):
        start = loop.time()
        second.settle(await second.acquire(), counted=True)
        for _ in range(4):
            first.settle(await first.acquire(), counted=True)
        await lose(peek, loss, coordinator.key("submit"))
        await second.acquire()
        assert loop.time() - start >= 3.0


async def test_a_client_that_asks_for_nothing_learns_of_a_lost_log_at_its_heartbeat(
    redis_server: RedisServer, peek: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The log deleted while both clients ask for nothing: the first's heartbeat sees its
    epoch gone, holds every grant and writes its four back, so a client that asks later
    (and never knew the old epoch) finds them."""
    loop = asyncio.get_running_loop()
    url, rate, options = redis_server.url, Rate(5, 3.0), {"lease_ttl": 0.3, "timeout": 0.2}
    async with joined(url, rate=rate, **options) as (coordinator, first, _s1):
        start = loop.time()
        for _ in range(5):
            first.settle(await first.acquire(), counted=True)
        await peek.delete(coordinator.key("submit"))
        await until(lambda: "lost the submit window" in caplog.text)
        async with joined(url, rate=rate, **options) as (_, second, _s2):
            await second.acquire()
        assert loop.time() - start >= 3.0


async def test_an_idle_key_is_not_taken_for_a_lost_one(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing asked for longer than the window (every grant gone from the log): the next
    grant comes at once, no hold (the epoch lives in the log, which does not expire)."""
    loop = asyncio.get_running_loop()
    async with joined(redis_server.url, rate=Rate(2, 0.3), lease_ttl=0.3) as (_, first, _s):
        first.settle(await first.acquire(), counted=True)
        await asyncio.sleep(1.5)  # (real time: the log's grants age out)
        start = loop.time()
        first.settle(await first.acquire(), counted=True)
        assert loop.time() - start < 0.2
    assert "lost the" not in caplog.text


@pytest.mark.parametrize("loss", ["flushall", "key"])
async def test_a_redis_that_lost_its_leases_grants_no_slot_until_each_wrote_its_own(
    redis_server: RedisServer, peek: aioredis.Redis, loss: str
) -> None:
    """The same for in-flight slots: two held of two, Redis emptied (or the leases alone
    deleted), and the next ask is not granted from what is left; once the heartbeats have
    written both back, it waits for one to be released."""
    url, options = redis_server.url, {"lease_ttl": 1.5, "timeout": 0.2}
    async with (
        joined(url, capacity=2, **options) as (coordinator, _w1, first),
        joined(url, capacity=2, **options) as (_, _w2, second),
    ):
        held = await first.acquire()
        await second.acquire()
        await lose(peek, loss, coordinator.key("leases"))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):  # past the hold (a heartbeat, 0.5 s, + 0.2 s)
                await second.acquire()
        first.release(held)
        async with asyncio.timeout(1.0):
            await second.acquire()


async def test_a_seeded_history_is_shared_with_every_client(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """seed() writes earlier sends to Redis: another client's next grant waits for them."""
    rate = Rate(5, 100.0)
    async with (
        joined(redis_server.url, rate=rate) as (coordinator, first, _s1),
        joined(redis_server.url, rate=rate) as (_, second, _s2),
    ):
        before = await server_time(peek)
        first.seed([(1.0, 3), (2.0, 2), (500.0, 5)])  # the last left the window long ago

        async def logged() -> bool:
            return bool(await peek.zcount(coordinator.key("submit"), "-inf", "(inf") == 2)

        await until(logged)
        grant, wait = await second.store.take(1)
        after = await server_time(peek)
        assert first.in_window() == 5  # what this process knows it counts
        assert second.in_window() == 0  # Redis knows the rest
    assert grant is None
    # The older one (2 s old when written, between before and after) leaves first:
    # 100.03 - 2 s of the server's clock after it was written.
    assert 98.03e6 - (after - before) <= round(wait * 1e6) <= 98.03e6


async def test_priority_then_arrival_within_a_process(redis_server: RedisServer) -> None:
    """One process's waiters are served by priority, then in arrival order."""
    order: list[str] = []
    granted: asyncio.Queue[object] = asyncio.Queue()
    # A 100 s window: capacity comes back only when the test gives a grant back.
    async with joined(redis_server.url, rate=Rate(1, 100.0)) as (_, limiter, _s):
        grant = await limiter.acquire()

        async def waiter(name: str, priority: float) -> None:
            granted.put_nowait(await limiter.acquire(priority=priority))
            order.append(name)

        tasks = []
        for count, (name, priority) in enumerate(
            [("low", 0.1), ("high", 0.9), ("low again", 0.1)], start=1
        ):
            tasks.append(asyncio.ensure_future(waiter(name, priority)))
            await until(lambda count=count: limiter.waiting == count)  # queued in this order
        for _ in tasks:
            limiter.settle(grant, counted=False)  # one unit free: the head of the queue gets it
            grant = await asyncio.wait_for(granted.get(), timeout=2)
        await asyncio.gather(*tasks)
    assert order == ["high", "low", "low again"]


async def test_a_cancelled_waiter_takes_no_capacity(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """A waiter cancelled in the queue takes nothing in Redis: another client gets it."""
    async with (
        joined(redis_server.url, rate=Rate(1, 100.0)) as (coordinator, limiter, _s),
        joined(redis_server.url, rate=Rate(1, 100.0)) as (_, other, _s2),
    ):
        grant = await limiter.acquire()
        cancelled = asyncio.ensure_future(limiter.acquire())
        await until(lambda: limiter.waiting == 1)
        cancelled.cancel()
        await until(lambda: limiter.waiting == 0)
        log = coordinator.key("submit")

        async def logged(grants: int) -> bool:
            return bool(await peek.zcount(log, "-inf", "(inf") == grants)

        assert await logged(1)  # the cancelled waiter added nothing
        limiter.settle(grant, counted=False)
        await until(lambda: logged(0))
        await other.acquire()  # the window is 100 s: had anything stayed, never
        assert await logged(1)
    assert cancelled.cancelled()


async def test_closing_fails_the_calls_still_waiting(redis_server: RedisServer) -> None:
    """Closing a client ends calls waiting for a shared grant or slot with an error."""
    async with joined(redis_server.url, rate=Rate(1, 10.0)) as (_, limiter, slots):
        await limiter.acquire()
        await slots.acquire()
        waiting = [asyncio.ensure_future(limiter.acquire()), asyncio.ensure_future(slots.acquire())]
        await until(lambda: limiter.waiting == 1 and slots.waiting == 1)
        assert not any(task.done() for task in waiting)
    for task in waiting:
        with pytest.raises(ClientClosedError, match="closed"):
            await task


async def test_slots_go_to_waiting_processes_in_arrival_order(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """Processes waiting for an in-flight slot get it first come, first served."""
    url = redis_server.url
    async with (
        joined(url, poll_interval=0.02) as (coordinator, _w1, holder),
        joined(url, poll_interval=0.02) as (_, _w2, early),
        joined(url, poll_interval=0.02) as (_, _w3, late),
    ):
        lease = await holder.acquire()
        queue = coordinator.key("queue")

        async def queued(owners: int) -> bool:
            return bool(await peek.zcard(queue) == owners)

        async def leases(held: int) -> bool:
            return bool(await peek.zcount(coordinator.key("leases"), "-inf", "(inf") == held)

        first = asyncio.ensure_future(early.acquire())
        await until(lambda: queued(1))
        second = asyncio.ensure_future(late.acquire())
        await until(lambda: queued(2))
        holder.release(lease)
        early_lease = await asyncio.wait_for(first, timeout=2)
        assert not second.done()
        early.release(early_lease)
        late.release(await asyncio.wait_for(second, timeout=2))
        await until(lambda: leases(0))  # every release reached Redis


async def test_a_process_waiting_for_a_slot_asks_redis_once_a_poll_interval(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process whose waiter finds every slot taken asks Redis again after
    ``poll_interval``, not at once: the count of leases each answer brings (which wakes
    the task serving the waiters, for a local share's room) must not wake it from its
    own ask (it did: 4,724 asks in the second, the process spinning on Redis)."""
    url = redis_server.url
    async with (
        joined(url, poll_interval=0.1) as (_, _w1, holder),
        joined(url, poll_interval=0.1) as (coordinator, _w2, waiter),
    ):
        lease = await holder.acquire()
        asks: list[float] = []
        call = coordinator.link.call

        async def counting(script: str, keys: list[str], args: list[Any]) -> Any:
            if script == _scripts.LEASE_ACQUIRE:
                asks.append(asyncio.get_running_loop().time())
            return await call(script, keys, args)

        monkeypatch.setattr(coordinator.link, "call", counting)
        waiting = asyncio.ensure_future(waiter.acquire())
        await asyncio.sleep(1.0)
        assert not waiting.done()
        assert 1 <= len(asks) <= 12, f"{len(asks)} asks in 1 s"  # (10, and a wake or two)
        holder.release(lease)
        waiter.release(await asyncio.wait_for(waiting, timeout=2))


async def test_a_process_that_stops_waiting_leaves_the_queue(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """A process whose only waiter gave up does not block the processes queued behind it."""
    url = redis_server.url
    async with (
        joined(url, poll_interval=0.02) as (coordinator, _w1, holder),
        joined(url, poll_interval=0.02) as (_, _w2, quitter),
        joined(url, poll_interval=0.02) as (_, _w3, patient),
    ):
        queue = coordinator.key("queue")

        async def queued(owners: int) -> bool:
            return bool(await peek.zcard(queue) == owners)

        lease = await holder.acquire()
        gave_up = asyncio.ensure_future(quitter.acquire())
        await until(lambda: queued(1))
        gave_up.cancel()
        await until(lambda: queued(0))  # it left the queue in Redis
        waiting = asyncio.ensure_future(patient.acquire())
        await until(lambda: queued(1))
        holder.release(lease)
        patient.release(await asyncio.wait_for(waiting, timeout=2))
    assert gave_up.cancelled()


async def test_keys_hold_a_hash_of_the_api_key_and_keys_do_not_mix(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """Keys are namespaced by a hash of the API key; another key's limits are its own."""
    secret = "sk-live-do-not-leak"
    rate = Rate(5, 100.0)  # a full window stays full for the whole test
    async with (
        joined(redis_server.url, api_key=secret, rate=rate) as (coordinator, mine, slots),
        joined(redis_server.url, api_key="another-key", rate=rate) as (_, theirs, _s),
    ):
        for _ in range(5):
            await mine.acquire()
        await slots.acquire()
        assert (await mine.store.take(1))[0] is None  # this key's window is full...
        assert (await theirs.store.take(1))[0] is not None  # ...the other key's is its own
        keys = await peek.keys("*")
        assert secret not in repr(coordinator)
    namespace = key_namespace("fashn", secret)
    assert {k for k in keys if k.startswith(namespace)} >= {f"{namespace}:submit"}
    assert all(secret not in k for k in keys)
    assert namespace.startswith("fashn:{")
    assert len(namespace) == len("fashn:{}") + 16


async def test_redis_down_at_start_is_a_clear_error() -> None:
    """No Redis: `async with` raises CoordinationError naming the URL, password masked."""
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    client = AsyncFashn(api_key="test-key-0123", base_url="http://127.0.0.1:9", coordination=url)
    assert "hunter2" not in repr(client)
    with pytest.raises(CoordinationError, match=r"redis://:\*\*\*@127\.0\.0\.1:\d+/0") as info:
        async with client:
            pass
    assert "hunter2" not in str(info.value)
    await client.aclose()  # closing again, or a client never opened, is harmless
    await AsyncFashn(
        api_key="test-key-0123", base_url="http://127.0.0.1:9", coordination=url
    ).aclose()


@pytest.mark.parametrize(("given", "said"), [(None, "asks for a password"), ("wrong", "invalid")])
async def test_a_redis_that_asks_for_a_password_says_so(
    redis_server: RedisServer, peek: aioredis.Redis, given: str | None, said: str
) -> None:
    """A Redis that asks for a password, given none: CoordinationError says it asks for
    one (it said "cannot reach Redis" and quoted redis-py's HELLO message); given a wrong
    one, Redis's own refusal; neither password shown."""
    await peek.config_set("requirepass", "s3cret-pass")
    url = redis_server.url if given is None else redis_server.url.replace("//", f"//:{given}@")
    client = AsyncFashn(api_key="test-key-0123", base_url="http://127.0.0.1:9", coordination=url)
    with pytest.raises(CoordinationError, match=said) as info:
        async with client:
            pass
    assert "s3cret-pass" not in str(info.value)
    assert "wrong" not in str(info.value).replace("wrong password", "")
    assert ("asks for a password" in str(info.value)) is (given is None)


@pytest.mark.parametrize(
    ("option", "error", "match"),
    [
        ("http://127.0.0.1:6379", ConfigurationError, "redis://"),
        (6379, ConfigurationError, "coordination"),
        ("redis:///0", ConfigurationError, "no host"),
        (RedisCoordination.__name__, ConfigurationError, "redis://"),
        # redis-py reads these as database 0, or refuses them only at the first call:
        ("redis://:hunter2@127.0.0.1/notanint", ConfigurationError, "not a number"),
        ("redis://:hunter2@127.0.0.1/cache/", ConfigurationError, "not a number"),
        ("redis://:hunter2@127.0.0.1/0?foo=bar", ConfigurationError, "does not know: 'foo'"),
        ("redis://:hunter2@127.0.0.1/?db=x", ConfigurationError, "not a number"),
        ("redis://:hunter2@127.0.0.1/0?db=-1", ConfigurationError, "not a number"),
        ("redis://:hunter2@127.0.0.1/0?protocol=9", ConfigurationError, "refuses"),
        ("redis://:hunter2@127.0.0.1/1?db=2", ConfigurationError, "two databases"),
        # A password holding an unescaped "/": the parser reads it as the path, or port.
        ("redis://u:12/hunter2@127.0.0.1/0", ConfigurationError, "not a number"),
        ("redis://u:hunter2/x@127.0.0.1:6379/0", ConfigurationError, "bad port"),
    ],
)
def test_bad_coordination_option(option: object, error: type[Exception], match: str) -> None:
    """A bad coordination option fails at construction, naming the problem; a password
    in it is never shown, in the message or the chain (a parser's error may quote it)."""
    with pytest.raises(error, match=match) as info:
        AsyncFashn(api_key="test-key-0123", coordination=option)  # type: ignore[arg-type]
    shown = [str(info.value), repr(info.value.__context__), repr(info.value.__cause__)]
    assert not any("hunter2" in text for text in shown), shown


@pytest.mark.parametrize("url", ["redis://127.0.0.1/0", "redis://127.0.0.1/", "rediss://h:1/15"])
def test_good_coordination_urls_are_taken(url: str) -> None:
    """A database given as a number, or none, is taken."""
    AsyncFashn(api_key="test-key-0123", coordination=url)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"prefix": "a{b"}, "prefix"),
    ],
)
def test_bad_coordination_settings(kwargs: dict[str, Any], match: str) -> None:
    """RedisCoordination validates its settings, naming the field; its repr masks secrets."""
    with pytest.raises(ValueError, match=match):
        RedisCoordination("redis://127.0.0.1", **kwargs)
    assert "pw" not in repr(RedisCoordination("redis://:pw@127.0.0.1/0?password=pw"))


async def test_redis_lost_mid_run_falls_back_to_a_share_then_rejoins(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped mid-batch: both clients go on at a 1/2 share, no 429; it comes back."""
    scale = 0.04
    limits = Limits().scaled(scale)
    limits = Limits(submit=limits.submit, status=limits.status, in_flight=6, margin=0.03)
    coordination = RedisCoordination(redis_server.url, lease_ttl=0.6, poll_interval=0.02)
    caplog.set_level(logging.WARNING, logger="fashn_async")
    async with Emulator(EmulatorConfig(time_scale=scale, seed=3)) as emu:
        request = TryOnRequest(
            model_image=emu.sample_image_url("model"),
            garment_image=emu.sample_image_url("garment"),
            category="tops",
        )
        options = {"api_key": emu.api_key, "base_url": emu.url, "limits": limits}
        options |= {"polling": Polling().scaled(scale), "coordination": coordination}
        async with AsyncFashn(**options) as first, AsyncFashn(**options) as second:

            async def run(client: AsyncFashn) -> list[bool]:
                return [r.ok async for r in client.batch(request for _ in range(24))]

            def offline() -> bool:
                return not any(c._coordinator and c._coordinator.online for c in (first, second))

            async def outage() -> None:
                await until(lambda: len(emu.report().accepted) >= 15, within=5)
                await asyncio.to_thread(redis_server.stop)
                await until(offline, within=5)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(redis_server.start)

            results, _ = await asyncio.gather(asyncio.gather(run(first), run(second)), outage())
            assert first._coordinator is not None
            assert first._coordinator.online
            report = emu.report()
    assert results == [[True] * 24] * 2
    assert report.rejected == {}
    assert report.max_submissions_in_window <= 25
    messages = [record.getMessage() for record in caplog.records]
    assert sum("not answering" in m and "1/2 share" in m for m in messages) == 2
    assert sum("answers again" in m for m in messages) == 2
