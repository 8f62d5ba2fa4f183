"""The break-when-all-ready race: many results land at once and the consumer leaves after
the first few. No worker may fail on a stream nobody reads any more, nothing may be left
running, and asyncio must log nothing (tests/conftest.py fails a test on any ERROR
record of the ``asyncio`` logger, "Task exception was never retrieved" included)."""

from __future__ import annotations

import asyncio
import random

import pytest
from batch_support import assert_idle, distinct, settle

from fashn_async import AsyncFashn, Batch, Limits
from fashn_async.testing import Emulator, EmulatorConfig

N = 20
# Every try-on ends within 50 ms of the others; no status budget, no in-flight cap, so
# the client sees them end together and the results reach the stream at once.
CONFIG = {"latency": (5.0, 5.05), "status_limit": None, "in_flight_limit": None}
LIMITS = Limits(in_flight=None, status=None, margin=0.0)


async def leave_after(batch: Batch, count: int, rng: random.Random) -> list[int]:
    """Take ``count`` results (yielding to the loop between some), then stop."""
    taken = []
    async for result in batch:
        taken.append(result.index)
        if rng.random() < 0.5:
            await asyncio.sleep(0)
        if len(taken) == count:
            break
    return taken


@pytest.mark.parametrize("seed", range(16))
async def test_break_when_all_are_ready(seed: int) -> None:
    """`break` out of `async for r in client.batch(...)` right as 20 results land within
    50 ms: quiet, each index at most once, everything cancelled within a second."""
    rng = random.Random(seed)
    async with (
        Emulator(EmulatorConfig(seed=seed, **CONFIG)) as emulator,  # type: ignore[arg-type]
        AsyncFashn(api_key=emulator.api_key, base_url=emulator.url, limits=LIMITS) as client,
    ):
        taken: list[int] = []
        async for result in client.batch(distinct(emulator, N)):
            taken.append(result.index)
            if len(taken) == rng.randint(1, 3) or rng.random() < 0.3:
                break
        await settle(client, within=1.0)
        assert len(set(taken)) == len(taken)
        assert_idle(client, emulator)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("how", ["async_with", "aclose", "kept_then_client_closed"])
async def test_leave_when_all_are_ready(seed: int, how: str) -> None:
    """The same race, left by async with, aclose() or closing the client under a kept
    batch: quiet, and nothing left running when the call returns."""
    rng = random.Random(seed)
    async with (
        Emulator(EmulatorConfig(seed=seed, **CONFIG)) as emulator,  # type: ignore[arg-type]
        AsyncFashn(api_key=emulator.api_key, base_url=emulator.url, limits=LIMITS) as client,
    ):
        batch = client.batch(distinct(emulator, N))
        count = rng.randint(1, 4)
        if how == "async_with":
            async with batch:
                taken = await leave_after(batch, count, rng)
        elif how == "aclose":
            taken = await leave_after(batch, count, rng)
            await batch.aclose()
        else:
            taken = await leave_after(batch, count, rng)
            await client.aclose()
        assert emulator.report().in_progress == 0
        assert len(set(taken)) == count
        assert_idle(client, emulator)
