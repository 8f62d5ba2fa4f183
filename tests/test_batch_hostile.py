"""What a hostile consumer, input or hook does to a batch: a result taken as its consumer
is cancelled is not lost, a BaseException reaches the consumer of its own batch only, a
stop keeps every unsent item from going out, and a second aclose() waits for the first."""

from __future__ import annotations

import asyncio
import random

import pytest
from batch_support import assert_idle, distinct

from fashn_async import AsyncFashn, BatchEvents, BatchProgress, BatchResult, Limits
from fashn_async.testing import Emulator, EmulatorConfig

N = 20
# Results land within 50 ms of each other, so a consumer's short timeouts meet them.
RACE = {"latency": (5.0, 5.05), "status_limit": None, "in_flight_limit": None}


class _CancelAsHanded(BatchEvents):
    """Cancels the waiting consumer in the same loop turn as a result is handed to it."""

    def __init__(self) -> None:
        self.consumer: asyncio.Task[BatchResult] | None = None

    def progress(self, progress: BatchProgress) -> None:
        consumer = self.consumer
        if consumer is not None and progress.finished and not consumer.done():
            # Runs after this worker hands its result over, before the consumer wakes.
            asyncio.get_running_loop().call_soon(consumer.cancel)


@pytest.mark.emulator(latency=(5.0, 6.0), in_flight_limit=None)
@pytest.mark.client(limits=Limits(in_flight=None))
async def test_consumer_cancelled_as_a_result_is_handed_loses_nothing(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """The task awaiting anext() is cancelled in the very loop turn a result is handed to
    it: that result is yielded by a later anext(), each index exactly once."""
    events = _CancelAsHanded()
    batch = client.batch(distinct(emulator, N), events=events)
    taken: list[int] = []
    while True:
        events.consumer = asyncio.ensure_future(anext(batch))
        try:
            result = await events.consumer
        except asyncio.CancelledError:
            continue
        except StopAsyncIteration:
            break
        taken.append(result.index)
    assert sorted(taken) == list(range(N))
    assert len(emulator.report().accepted) == N
    assert_idle(client, emulator)


@pytest.mark.looptime(False)  # a race of real timeouts with real answers
@pytest.mark.parametrize("seed", range(3))
async def test_timeouts_around_anext_lose_no_result(seed: int) -> None:
    """anext() under a short asyncio.wait_for, again and again: every index is yielded
    exactly once, every item was submitted once, and no slot is left held."""
    rng = random.Random(seed)
    async with (
        Emulator(
            EmulatorConfig(seed=seed, time_scale=0.01, **RACE)  # type: ignore[arg-type]
        ) as emulator,
        AsyncFashn(
            api_key=emulator.api_key,
            base_url=emulator.url,
            limits=Limits(in_flight=None, status=None, margin=0.0),
        ) as client,
    ):
        batch = client.batch(distinct(emulator, N), max_pending=rng.choice([4, 8, N]))
        taken: list[int] = []
        while True:
            try:
                result = await asyncio.wait_for(anext(batch), rng.choice([0.0005, 0.001, 0.01]))
            except TimeoutError:
                continue
            except StopAsyncIteration:
                break
            assert result.ok, result.error
            taken.append(result.index)
        assert sorted(taken) == list(range(N))
        assert len(emulator.report().accepted) == N
        assert_idle(client, emulator)
