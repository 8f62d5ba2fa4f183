"""Scale-out for real: client processes sharing one key through a real redis-server.

The emulator runs in the test process with its time compressed 25 times (a 60 s window
lasts 2.4 s) and the API's limits on; every client is its own OS process
(tests/redis_support.py). Real time, so looptime is off here.

Scheduling jitter does not shrink with the time scale: 4 clients, the emulator and Redis
on 2 cores delay a request by up to ~15 ms between its grant and its arrival (measured),
so the clients' margin is 30 ms of real time (the default, scaled, would be 10 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis_support import RedisServer, start_worker

from fashn_async import AsyncFashn, Limits, Polling, RedisCoordination, TryOnRequest
from fashn_async.testing import Emulator, EmulatorConfig

pytestmark = pytest.mark.looptime(False)


SCALE = 0.04  # API seconds -> real seconds
R = 25  # the emulator's (and the client's) submit limit per 60 API seconds
MARGIN = 0.03  # real seconds


async def warm(emu: Emulator) -> None:
    """Have the emulator draw its sample images now, not while it times submissions."""
    async with aiohttp.ClientSession() as session:
        for kind in ("model", "garment"):
            async with session.get(emu.sample_image_url(kind)) as response:
                await response.read()


async def test_four_processes_keep_one_keys_limits(redis_server: RedisServer) -> None:
    """4 processes x 19 try-ons through Redis: all done, no 429, <= R in any window.

    How close their aggregate throughput comes to R/W is a figure of
    benchmarks/bench_scaleout.py (against the same processes without Redis), not an
    assert here: on a loaded machine it measures the machine.
    """
    count = 19  # 76 in all: three full windows after the first grant
    async with Emulator(EmulatorConfig(time_scale=SCALE, seed=7)) as emu:
        await warm(emu)
        args = ["--base-url", emu.url, "--redis", redis_server.url, "--scale", str(SCALE)]
        args += ["--count", str(count), "--poll", "0.02", "--margin", str(MARGIN)]
        workers = await asyncio.gather(
            *(start_worker(*args, api_key=emu.api_key) for _ in range(4))
        )
        try:
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write(b"go\n")
            outcomes = []
            for worker in workers:
                assert worker.stdout is not None
                outcomes.append(json.loads(await worker.stdout.readline()))
                assert await worker.wait() == 0
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.kill()
                    await worker.wait()
        report = emu.report()
    assert outcomes == [{"ok": count}] * 4
    assert report.rejected == {}, "a 429 was answered"
    assert report.max_submissions_in_window <= R
    assert len(report.accepted) == 4 * count


async def test_killed_process_releases_its_slots_within_the_lease_ttl(
    redis_server: RedisServer,
) -> None:
    """A process holding every slot keeps them while alive; SIGKILLed, they expire in ttl."""
    ttl, poll = 0.6, 0.02
    loop = asyncio.get_running_loop()
    async with Emulator(EmulatorConfig(time_scale=SCALE)) as emu:
        args = ["--base-url", emu.url, "--redis", redis_server.url, "--scale", str(SCALE)]
        args += ["--mode", "hold", "--count", "2", "--in-flight", "2"]
        args += ["--lease-ttl", str(ttl), "--poll", str(poll)]
        holder = await start_worker(*args, api_key=emu.api_key)
        try:
            assert holder.stdin is not None
            assert holder.stdout is not None
            holder.stdin.write(b"go\n")
            assert await holder.stdout.readline() == b"held\n"
            async with AsyncFashn(
                api_key=emu.api_key,
                base_url=emu.url,
                limits=Limits(in_flight=2).scaled(SCALE),
                polling=Polling().scaled(SCALE),
                coordination=RedisCoordination(redis_server.url, lease_ttl=ttl, poll_interval=poll),
            ) as client:
                request = TryOnRequest(
                    model_image=emu.sample_image_url("model"),
                    garment_image=emu.sample_image_url("garment"),
                    category="tops",
                )
                submit = asyncio.ensure_future(client.submit(request))
                await asyncio.sleep(3 * ttl)  # real time: leases are renewed past their ttl
                assert not submit.done(), "a slot was taken from a live process"
                assert client._coordinator is not None
                leases = client._coordinator.key("leases")
                holder.send_signal(signal.SIGKILL)
                await holder.wait()
                killed_at = loop.time()
                peek = aioredis.Redis.from_url(redis_server.url)
                try:
                    seconds, micros = await peek.time()
                    dead_at = int(seconds) * 1_000_000 + int(micros)  # the server's clock
                    expiries = [
                        score
                        for _, score in await peek.zrangebyscore(
                            leases, "-inf", "(inf", withscores=True
                        )
                    ]
                finally:
                    await peek.aclose()
                await asyncio.wait_for(submit, timeout=5 * ttl)  # a backstop, not a bound
                waited = loop.time() - killed_at
                await client.cancel(submit.result().id)
        finally:
            with contextlib.suppress(ProcessLookupError):
                holder.kill()
            await holder.wait()
    # On the server's clock: the dead process's two leases were alive when it died (it
    # had kept them renewed) and end within ttl of its death (nothing renews them now);
    # then the waiting submit() got its slot: not before the first of them expired.
    # (dead_at was read after the kill, so it is no earlier than the server's time at
    # killed_at: the bound below is one a correct client always meets, and one a client
    # that took the dead process's slot at once misses by at least 2/3 of the ttl.)
    assert len(expiries) == 2
    assert dead_at < min(expiries) <= max(expiries) <= dead_at + ttl * 1e6
    assert waited >= (min(expiries) - dead_at) / 1e6
