"""A Redis that loses its data again and again: probation, local shares, and back.

Real time against a real redis-server (looptime off), as in test_redis_limits.py; the
emulator's time is compressed 25 times (a 60 s window lasts 2.4 s). The probation policy
itself is pure and checked on numbers first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis_support import RedisServer

from fashn_async import AsyncFashn, Limits, Polling, RedisCoordination, TryOnRequest
from fashn_async._coordination._leases import local_room
from fashn_async._coordination._probation import Probation
from fashn_async.testing import Emulator, EmulatorConfig, EmulatorReport

pytestmark = pytest.mark.looptime(False)

SCALE = 0.04  # API seconds -> real seconds
#: A heartbeat of 0.2 s and Redis calls of at most 0.2 s: a hold of 0.4 s, a first
#: probation of 4 s (10 holds; 100 API-s).
COORDINATION = {"lease_ttl": 0.6, "poll_interval": 0.02, "timeout": 0.2}
#: Of three clients saturating the in-flight cap: a heartbeat of 0.3 s (a hold of 0.5 s,
#: a first probation of 5 s). A lease expires 0.6 s after a heartbeat was due, not 0.4 s:
#: the loop the three clients and the emulator share stalls that long on a loaded machine
#: (thread-pool threads starting at the first requests), and another client's waiter
#: takes the slot of a prediction still running (a 7th in progress: a 429). (On a
#: quarter of a core: heartbeats 0.5-1.1 s apart, 7-12 slots held at once in 11 of 12
#: runs at a lease_ttl of 0.6.)
SATURATING = {"lease_ttl": 0.9}


def test_the_same_trouble_twice_within_a_period_begins_a_probation() -> None:
    """A loss of one piece, then of another, is no flapping; the same piece again within a
    period is, and any within a period of a probation's end; a trouble on probation starts
    the period again."""
    probation = Probation(10.0, 80.0)
    assert probation.trouble("the submit window", 0.0) is None
    assert probation.trouble("the leases", 1.0) is None
    assert probation.trouble("answers", 2.0) is None
    assert not probation.active(2.0)
    assert probation.trouble("the submit window", 12.0) is None  # (12 s apart: a restart)
    assert probation.trouble("the submit window", 15.0) == 3.0
    assert probation.active(24.9)
    assert probation.until == 25.0
    assert probation.trouble("answers", 20.0) is None  # (on probation: it starts again)
    assert probation.until == 30.0
    assert not probation.active(30.0)
    assert probation.trouble("the leases", 39.0) == 9.0  # (soon after it: another)
    assert probation.until == 59.0


def test_a_probation_soon_after_the_last_lasts_twice_as_long_up_to_the_cap() -> None:
    """Flapping again soon after a probation: 10, 20, 40, 80, 80 s; after a quiet spell as
    long as the cap, back to 10 s."""
    probation, now, periods = Probation(10.0, 80.0), 0.0, []
    for _ in range(5):
        probation.trouble("the leases", now)
        probation.trouble("the leases", now + 1)
        periods.append(probation.until - (now + 1))
        now = probation.until + 5
    assert periods == [10.0, 20.0, 40.0, 80.0, 80.0]
    now = probation.until + 80
    probation.trouble("the leases", now)
    probation.trouble("the leases", now + 1)
    assert probation.until - (now + 1) == 10.0


def test_joining_another_client_s_probation() -> None:
    """Another client's probation mark puts this one on probation until its end, once."""
    probation = Probation(10.0, 80.0)
    assert probation.join(5.0, 0.0)
    assert not probation.join(7.0, 1.0)  # (already on it: extended, not begun again)
    assert probation.until == 7.0
    assert not probation.join(3.0, 8.0)  # (a mark already run out)


def test_a_local_share_of_slots_leaves_what_the_others_hold_beyond_theirs() -> None:
    """6 slots, 2 clients: 3 each, less what the other holds beyond its 3."""
    assert local_room(3, 6, 0) == 3
    assert local_room(3, 6, 3) == 3
    assert local_room(3, 6, 5) == 1
    assert local_room(3, 6, 6) == 0
    assert local_room(1, 6, 9) == 0  # (a count with leases not yet expired: none)


def client(emu: Emulator, url: str, **options: float) -> AsyncFashn:
    """A client of ``emu`` sharing through Redis at ``url`` (the API's limits, time x25, 6
    in flight in all, margin 30 ms of real time; ``options``: of RedisCoordination)."""
    limits = Limits().scaled(SCALE)
    limits = Limits(submit=limits.submit, status=limits.status, in_flight=6, margin=0.03)
    coordination = RedisCoordination(url, **(COORDINATION | options))  # type: ignore[arg-type]
    return AsyncFashn(
        api_key=emu.api_key,
        base_url=emu.url,
        limits=limits,
        polling=Polling().scaled(SCALE),
        coordination=coordination,
    )


@contextlib.asynccontextmanager
async def clients(
    url: str, count: int, config: EmulatorConfig | None = None, **options: float
) -> AsyncIterator[tuple[Emulator, list[AsyncFashn]]]:
    """The emulator (``config``: time x25, seed 5) and ``count`` clients (:func:`client`,
    ``options`` of RedisCoordination)."""
    async with Emulator(config or EmulatorConfig(time_scale=SCALE, seed=5)) as emu:
        async with contextlib.AsyncExitStack() as stack:
            started = [
                await stack.enter_async_context(client(emu, url, **options)) for _ in range(count)
            ]
            yield emu, started


async def saturate(emu: Emulator, client: AsyncFashn, count: int) -> list[bool]:
    """Run ``count`` try-ons through ``client`` at once; whether each succeeded."""
    request = TryOnRequest(
        model_image=emu.sample_image_url("model"),
        garment_image=emu.sample_image_url("garment"),
        category="tops",
    )
    return [result.ok async for result in client.batch(request for _ in range(count))]


def per_window(report: EmulatorReport, since: float) -> list[int]:
    """Submissions accepted in each 60 API-s window from ``since`` on (the last partial)."""
    times = [s.time for s in report.accepted if s.time >= since]
    return [
        sum(1 for t in times if (t - since) // 60 == i)
        for i in range(int((times[-1] - since) // 60) + 1)
    ]


@pytest.mark.parametrize("loss", ["flushall", "key", "refuse"])
async def test_a_flapping_redis_puts_the_clients_on_probation_and_they_go_on(
    redis_server: RedisServer, peek: aioredis.Redis, caplog: pytest.LogCaptureFixture, loss: str
) -> None:
    """Redis emptied (or the submit log deleted, or every write refused for 0.07 s) every
    0.1 s (2.5 API-s) while three clients saturate the submit window: each goes on
    probation (or stays away) and keeps to its 1/3 share, so the batches go on (without
    a probation every loss began a hold, every outage a window of nothing: after the
    first window none, or 3-9 a window) with no 429 and never more than 25 in a window."""
    caplog.set_level(logging.WARNING, logger="fashn_async")
    async with clients(redis_server.url, 3, None, **SATURATING) as (emu, started):
        done = asyncio.Event()

        async def flap() -> None:
            while len(emu.report().accepted) < 5:
                await asyncio.sleep(0.01)
            while not done.is_set():
                coordinator = started[0]._coordinator
                assert coordinator is not None
                if loss == "flushall":
                    await peek.flushall()
                elif loss == "key":
                    await peek.delete(coordinator.key("submit"))
                else:  # (out of memory for 0.07 s: a script whose first write may
                    # grow memory is refused, REPLAY, RESTAMP, PAUSE; the others run)
                    await peek.config_set("maxmemory", 1)
                    await asyncio.sleep(0.07)  # (not in step with the heartbeats, 0.3 s)
                    await peek.config_set("maxmemory", 0)
                await asyncio.sleep(0.1)

        async def run() -> list[list[bool]]:
            try:
                return await asyncio.gather(*(saturate(emu, c, 24) for c in started))
            finally:
                done.set()

        async with asyncio.timeout(45):  # (a stall: it never ends while Redis flaps)
            results, _ = await asyncio.gather(run(), flap())
        report = emu.report()
    assert results == [[True] * 24] * 3
    assert report.rejected == {}
    assert report.max_submissions_in_window <= 25
    times = [s.time for s in report.accepted]
    gap = max(b - a for a, b in itertools.pairwise(times))
    windows = per_window(report, report.accepted[25].time)
    print(f"first {times[0]:.0f}, 26th {times[25]:.0f}, last {times[-1]:.0f} API-s; ", end="")
    print(f"longest gap {gap:.0f} API-s; per window from the 26th: {windows}")
    messages = [record.getMessage() for record in caplog.records]
    # Once per client at most (no warning at each loss); one whose every heartbeat fell
    # on refused writes stays away instead, at the same share.
    assert 1 <= sum("on probation for" in m and "1/3 share" in m for m in messages) <= 3
    # Each whole window after the first pause: at least one client's share (8; the three
    # shares are 24, measured 22-23), not the trickle of windows begun again (3-9).
    assert windows[:-1]
    assert min(windows[:-1]) >= 8


async def test_a_single_loss_holds_and_shares_again_without_probation(
    redis_server: RedisServer, peek: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """One FLUSHALL mid-run (a restart without persistence): held, then shared through
    Redis again at once; no probation, no local share, no 429."""
    caplog.set_level(logging.WARNING, logger="fashn_async")
    async with clients(redis_server.url, 2) as (emu, started):
        local: list[bool] = []

        async def flush_once() -> None:
            while len(emu.report().accepted) < 20:
                await asyncio.sleep(0.01)
            await peek.flushall()

        async def watch() -> None:
            while True:
                local.extend(not (c._coordinator and c._coordinator.online) for c in started)
                await asyncio.sleep(0.005)

        watcher = asyncio.ensure_future(watch())
        try:
            results, _ = await asyncio.gather(
                asyncio.gather(*(saturate(emu, c, 20) for c in started)), flush_once()
            )
        finally:
            watcher.cancel()
        report = emu.report()
    assert results == [[True] * 20] * 2
    assert report.rejected == {}
    assert report.max_submissions_in_window <= 25
    assert not any(local)
    messages = [record.getMessage() for record in caplog.records]
    assert any("lost the submit window" in m for m in messages)
    assert not any("probation" in m for m in messages)


async def test_a_client_that_starts_while_another_is_on_probation_is_on_it_too(
    redis_server: RedisServer, peek: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Another client's probation is marked in Redis: a client starting then keeps to its
    share from the start (its grants through Redis and the other's local share could add
    up to more than the limit), and both rejoin once the probation has run out."""
    caplog.set_level(logging.WARNING, logger="fashn_async")
    coordination = RedisCoordination(redis_server.url, **COORDINATION)  # type: ignore[arg-type]
    first = coordination.coordinator(api_key="key-1")
    window = first.window("submit", Limits().scaled(SCALE).submit, margin=0.03)
    await first.start()
    try:
        window.settle(await window.acquire(), counted=True)
        for _ in range(2):  # (the log lost twice: the epoch check at each heartbeat)
            await peek.delete(first.key("submit"))
            while not any("lost the submit window" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.01)
            caplog.clear()
            await asyncio.sleep(0.3)
        assert first.link.on_probation
        assert not first.online
        second = coordination.coordinator(api_key="key-1")
        second.window("submit", Limits().scaled(SCALE).submit, margin=0.03)
        await second.start()
        try:
            assert second.link.on_probation
            assert not second.online
            assert "is on probation for another client" in caplog.text
            async with asyncio.timeout(20):
                while not (first.online and second.online):
                    await asyncio.sleep(0.05)
        finally:
            await second.aclose()
    finally:
        await first.aclose()


async def test_a_client_over_its_share_when_redis_goes_away_leaves_the_others_less(
    redis_server: RedisServer,
) -> None:
    """One client holds 5 of the 6 slots, another 1, when Redis goes away: each keeps to a
    3-slot share, but the second may not take 2 more while the first still holds its 5
    (they outlive the window's pause: 100-120 API-s); nothing is refused for too many in
    progress, and every try-on ends once Redis is back."""
    config = EmulatorConfig(time_scale=SCALE, seed=5, latency=(100.0, 120.0))
    async with clients(redis_server.url, 2, config) as (emu, [first, second]):
        async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
            runs = [tg.create_task(saturate(emu, first, 5))]
            while emu.report().in_progress < 5:
                await asyncio.sleep(0.01)
            runs.append(tg.create_task(saturate(emu, second, 4)))
            while emu.report().in_progress < 6:
                await asyncio.sleep(0.01)
            redis_server.stop()
            await asyncio.sleep(4.0)  # (the share's window, then 1.6 s of local slots)
            assert emu.report().in_progress <= 6
            redis_server.start()
        report = emu.report()
    assert [run.result() for run in runs] == [[True] * 5, [True] * 4]
    assert report.rejected == {}
    assert report.max_in_progress <= 6


async def test_a_client_that_joins_a_probation_shrinks_the_others_shares(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """A client alone on probation keeps to its share of 1/1, the whole limit; one that
    starts then takes 1/2, and the first's share shrinks to 1/2 at its next heartbeat:
    nothing refused, never more than 25 in a window."""
    async with clients(redis_server.url, 1) as (emu, [first]):
        co = first._coordinator
        assert co is not None

        async def flap() -> None:  # (the submit log deleted every 0.3 s)
            while not done.is_set():
                await peek.delete(co.key("submit"))
                await asyncio.sleep(0.3)

        async def late() -> list[bool]:
            while not co.link.on_probation:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
            async with client(emu, redis_server.url) as second:
                return await saturate(emu, second, 30)

        done = asyncio.Event()
        async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
            tg.create_task(flap())
            runs = [tg.create_task(saturate(emu, first, 45)), tg.create_task(late())]
            await asyncio.wait(runs)
            done.set()
        report = emu.report()
    assert [run.result() for run in runs] == [[True] * 45, [True] * 30]
    assert report.rejected == {}
    assert report.max_submissions_in_window <= 25


async def test_a_log_put_back_as_it_was_earlier_is_a_loss(redis_server: RedisServer) -> None:
    """The submit log put back as it was 22 grants earlier (a restart from a snapshot, a
    failover to a replica that lagged, a backup restored: the epoch is the same, it was
    in the copy): its version is lower than the clients knew, so it is a loss, and the
    grants since are written back before anything more is granted."""
    raw = aioredis.Redis.from_url(redis_server.url)  # (DUMP's bytes are no text)
    try:
        async with clients(redis_server.url, 2) as (emu, [first, second]):
            co = first._coordinator
            assert co is not None

            async def roll_back() -> None:
                while len(emu.report().accepted) < 3:
                    await asyncio.sleep(0.001)
                snapshot = await raw.dump(co.key("submit"))
                while len(emu.report().accepted) < 25:
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.1)
                await raw.restore(co.key("submit"), 0, snapshot, replace=True)

            async with asyncio.timeout(60):
                results = await asyncio.gather(
                    saturate(emu, first, 30), saturate(emu, second, 30), roll_back()
                )
            report = emu.report()
    finally:
        await raw.aclose()
    assert results[:2] == [[True] * 30, [True] * 30]
    assert report.rejected == {}
    assert report.max_submissions_in_window <= 25


async def test_clients_whose_heartbeats_differ_hold_as_long_as_the_slowest(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """A client with a heartbeat of 0.2 s and one of 5 s (``lease_ttl`` 15, a rolling deploy
    changing it, say) that took 12 of the window's 25 and idles: after a FLUSHALL the
    first notices first, and holds until the second has written its 12 back (the longest
    hold of the live clients, 5.2 s), not for its own 0.4 s."""
    async with Emulator(EmulatorConfig(time_scale=SCALE, seed=5)) as emu:
        async with (
            client(emu, redis_server.url) as first,
            client(emu, redis_server.url, lease_ttl=15.0) as second,
        ):
            assert await saturate(emu, first, 13) == [True] * 13
            assert await saturate(emu, second, 12) == [True] * 12
            await peek.flushall()
            async with asyncio.timeout(60):
                assert await saturate(emu, first, 40) == [True] * 40
        report = emu.report()
    assert report.rejected == {}
    assert report.max_submissions_in_window <= 25


async def test_a_short_lease_ttl_does_not_cut_the_shared_keys_expiry(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """A client with ``lease_ttl`` 0.6 no longer shortens the members set's and the holds
    hash's expiry to its 1.2 s, which dropped a slower client's (``lease_ttl`` 15,
    heartbeat 5 s) hold with them: a client started after the quick one left hears the
    slow one's hold, and after a FLUSHALL holds until the slow one's 12 grants are back
    (a break-it helper's case: it held 0.4 s, 1-2 x 429 in 5 runs of 5)."""
    config = EmulatorConfig(time_scale=SCALE, seed=5, latency=(2.0, 4.0))
    async with Emulator(config) as emu:
        async with client(emu, redis_server.url, lease_ttl=15.0) as slow:
            async with client(emu, redis_server.url) as quick:
                await asyncio.sleep(0.3)
                assert quick._coordinator is not None
                assert quick._coordinator.link.hold > 5
            busy = asyncio.ensure_future(saturate(emu, slow, 12))
            await asyncio.sleep(1.25)  # (past the quick one's 1.2 s)
            async with client(emu, redis_server.url) as restarted:
                assert await busy == [True] * 12  # (then the slow client idles)
                await peek.flushall()
                async with asyncio.timeout(30):
                    assert await saturate(emu, restarted, 20) == [True] * 20
        report = emu.report()
    assert report.rejected == {}
    assert report.max_submissions_in_window <= 25


async def test_grants_written_back_make_an_older_copy_show(
    redis_server: RedisServer, peek: aioredis.Redis
) -> None:
    """After a FLUSHALL the clients write their grants back (a new epoch, version 0); a
    copy of the log taken as the new epoch began, put back during the hold, lacks them.
    Writing them back raised the version, so the copy shows as older and they are
    written back again (a break-it helper's case: 1-2 x 429 in 5 runs of 5)."""
    raw = aioredis.Redis.from_url(redis_server.url)  # (DUMP's bytes are no text)
    config = EmulatorConfig(time_scale=SCALE, seed=5, latency=(2.0, 4.0))
    try:
        async with Emulator(config) as emu, client(emu, redis_server.url) as active:
            async with client(emu, redis_server.url, lease_ttl=1.5, timeout=1.0) as idle:
                assert active._coordinator is not None
                key = active._coordinator.key("submit")

                async def roll_back() -> None:
                    while len(emu.report().accepted) < 20:
                        await asyncio.sleep(0.005)
                    await peek.flushall()
                    while not await peek.zrangebyscore(key, "+inf", "+inf"):
                        await asyncio.sleep(0.001)
                    snapshot = await raw.dump(key)
                    await asyncio.sleep(0.8)  # (the idle one wrote its 12 back; hold 1.5 s)
                    await raw.restore(key, 0, snapshot, replace=True)

                async with asyncio.timeout(60):
                    assert await saturate(emu, idle, 12) == [True] * 12  # (then idles)
                    results = await asyncio.gather(saturate(emu, active, 30), roll_back())
            report = emu.report()
    finally:
        await raw.aclose()
    assert results[0] == [True] * 30
    assert report.rejected == {}
    assert report.max_submissions_in_window <= 25
