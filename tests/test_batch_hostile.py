"""What a hostile consumer, input or hook does to a batch: a result taken as its consumer
is cancelled is not lost, a BaseException reaches the consumer of its own batch only, a
stop keeps every unsent item from going out, and a second aclose() waits for the first."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import pytest
from batch_support import assert_idle, distinct

from fashn_async import (
    AsyncFashn,
    BatchEvents,
    BatchProgress,
    BatchResult,
    Limits,
    TryOnRequest,
    errors,
)
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


class Halt(BaseException):
    """A BaseException of the user's own that is not an Exception."""


SLOW = pytest.mark.emulator(latency=(20.0, 40.0), in_flight_limit=None)
MANY = pytest.mark.client(limits=Limits(in_flight=None))
FATAL = [KeyboardInterrupt, SystemExit, Halt]


async def _beside(
    client: AsyncFashn, emulator: Emulator, bad: Callable[[], Awaitable[None]]
) -> None:
    """Run ``bad`` while another batch of the same client runs; that batch yields all its
    items, and a batch started afterwards works."""
    started = asyncio.Event()
    other_items = distinct(emulator, 4)

    async def other() -> list[int]:
        indexes = []
        async for result in client.batch(other_items, on_submitted=lambda i, pid: started.set()):
            assert result.ok, result.error
            indexes.append(result.index)
        return indexes

    task = asyncio.ensure_future(other())
    await started.wait()
    await bad()
    assert sorted(await task) == [0, 1, 2, 3]
    later = [r async for r in client.batch(distinct(emulator, 2))]
    assert sorted(r.index for r in later) == [0, 1]
    assert all(r.ok for r in later)
    assert_idle(client, emulator)


@SLOW
@MANY
@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("fatal", FATAL, ids=lambda cls: cls.__name__)
async def test_an_input_raising_a_base_exception_reaches_its_consumer_only(
    client: AsyncFashn, emulator: Emulator, kind: str, fatal: type[BaseException]
) -> None:
    """An input raising KeyboardInterrupt, SystemExit or a BaseException of its own after
    3 items: that batch's consumer gets it as is once its running predictions are
    cancelled on the server; another batch of the client goes on, a later one works."""
    items = distinct(emulator, 3)

    def sync_source() -> Iterator[TryOnRequest]:
        yield from items
        raise fatal("stop now")

    async def async_source() -> AsyncIterator[TryOnRequest]:
        for item in items:
            yield item
        await asyncio.sleep(1.0)  # the 3 items are running on the server by now
        raise fatal("stop now")

    async def bad() -> None:
        own: set[str] = set()  # what this batch created, as it said (not guessed)
        batch = client.batch(
            sync_source() if kind == "sync" else async_source(),
            on_submitted=lambda index, prediction_id: own.add(prediction_id),
        )
        with pytest.raises(fatal, match="stop now"):
            async for _ in batch:
                pass
        report = emulator.report()
        assert own <= {a.id for a in report.accepted}
        assert own <= set(report.cancels)  # whatever it created, sync or async
        if kind == "async":
            assert len(own) == len(items)  # they were running when the input raised
        with pytest.raises(errors.BatchClosedError):
            await anext(batch)

    await _beside(client, emulator, bad)


@SLOW
@MANY
@pytest.mark.parametrize("fatal", FATAL, ids=lambda cls: cls.__name__)
async def test_an_item_raising_a_base_exception_reaches_its_consumer_only(
    client: AsyncFashn, emulator: Emulator, fatal: type[BaseException]
) -> None:
    """An item (a mapping) raising KeyboardInterrupt, SystemExit or a BaseException of
    its own when read: that batch's consumer gets it as is, the items before it are
    cancelled on the server, another batch of the client goes on."""

    class Exploding(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise fatal("bad item")

        def __iter__(self) -> Iterator[str]:
            raise fatal("bad item")

        def __len__(self) -> int:
            return 1

    async def bad() -> None:
        items: list[Any] = [*distinct(emulator, 3), Exploding()]
        with pytest.raises(fatal, match="bad item"):
            async for _ in client.batch(items):
                pass

    await _beside(client, emulator, bad)


@SLOW
@MANY
@pytest.mark.parametrize("hook", ["sending", "submitted", "progress"])
@pytest.mark.parametrize("fatal", FATAL, ids=lambda cls: cls.__name__)
async def test_a_hook_raising_a_base_exception_reaches_its_consumer_only(
    client: AsyncFashn, emulator: Emulator, hook: str, fatal: type[BaseException]
) -> None:
    """A hook raising KeyboardInterrupt, SystemExit or a BaseException of its own: that
    batch's consumer gets it as is, what the batch had created is cancelled on the
    server, no slot or grant is held, and another batch of the client is unharmed."""
    ids: list[str] = []
    calls = {"sending": 0, "submitted": 0, "progress": 0}

    def maybe(name: str) -> None:
        calls[name] += 1
        if name == hook and calls[name] == 2:
            raise fatal(f"{name} stops")

    async def bad() -> None:
        batch = client.batch(
            distinct(emulator, 5),
            on_sending=lambda i: maybe("sending"),
            on_submitted=lambda i, pid: (ids.append(pid), maybe("submitted")),
            on_progress=lambda p: maybe("progress"),
        )
        with pytest.raises(fatal, match=f"{hook} stops"):
            async for _ in batch:
                pass
        assert set(ids) <= set(emulator.report().cancels)

    await _beside(client, emulator, bad)


@pytest.mark.emulator(latency=(5.0, 6.0))
@pytest.mark.client(limits=Limits(in_flight=2))
@pytest.mark.parametrize("at", [0, 1, 3])
async def test_a_raising_hook_lets_no_unsent_item_go_out(
    client: AsyncFashn, emulator: Emulator, at: int
) -> None:
    """A submitted hook raising at one item of 10 (2 in flight at most): no POST goes out
    after it; every item not sent by then fails without a prediction."""
    raised = False
    sent_after = []

    def sending(index: int) -> None:
        if raised:
            sent_after.append(index)

    def submitted(index: int, prediction_id: str) -> None:
        nonlocal raised
        if index == at:
            raised = True
            raise RuntimeError("journal full")

    results: list[BatchResult] = []
    batch = client.batch(distinct(emulator, 10), on_sending=sending, on_submitted=submitted)
    with pytest.raises(errors.EventHookError, match="journal full"):
        async for result in batch:
            results.append(result)
    assert sent_after == []
    report = emulator.report()
    assert report.requests_by_route["run"] == len(report.accepted) <= at + 2
    sent = {r.index for r in results if r.prediction_id is not None}
    assert len(sent) == len(report.accepted)
    unsent = [r for r in results if r.index not in sent]
    assert len(results) == batch.progress.read
    assert all("was not sent" in str(r.error) for r in unsent)
    assert_idle(client, emulator)


@pytest.mark.parametrize("seed", range(12))
async def test_out_of_credits_sends_nothing_more_and_names_the_first_refusal(seed: int) -> None:
    """Credits for 3 of 10 items, 8 POSTs at once (refusals answered in any order): after
    the first refusal no POST goes out, and the batch's error names the lowest index
    refused."""
    async with (
        Emulator(EmulatorConfig(seed=seed, credits=3, latency=(5.0, 6.0))) as emulator,
        AsyncFashn(
            api_key=emulator.api_key, base_url=emulator.url, limits=Limits(in_flight=8)
        ) as client,
    ):
        refused_at: list[int] = []
        sent_after: list[int] = []
        results: list[BatchResult] = []

        def sending(index: int) -> None:
            if refused_at:
                sent_after.append(index)

        batch = client.batch(
            distinct(emulator, 10), on_sending=sending, on_not_created=refused_at.append
        )
        with pytest.raises(errors.OutOfCreditsError) as caught:
            async for result in batch:
                results.append(result)
        assert sent_after == []
        assert len(emulator.report().accepted) == 3
        refused = [
            r.index
            for r in results
            if isinstance(r.error, errors.OutOfCreditsError) and "was not sent" not in str(r.error)
        ]
        assert sorted(refused) == sorted(refused_at)
        assert f"at input {min(refused)}:" in str(caught.value)
        assert len(results) == batch.progress.read
        assert_idle(client, emulator)


@SLOW
@MANY
async def test_a_second_aclose_waits_for_the_first(client: AsyncFashn, emulator: Emulator) -> None:
    """aclose() called while another aclose() is under way returns only once the batch's
    predictions are cancelled on the server and its slots are back."""
    batch = client.batch(distinct(emulator, 6))
    async with anyio.create_task_group() as group:
        group.start_soon(anext, batch)
        await anyio.wait_all_tasks_blocked()
        group.cancel_scope.cancel()
    first = asyncio.ensure_future(batch.aclose())
    await asyncio.sleep(0)
    await batch.aclose()
    assert emulator.report().in_progress == 0
    assert client._engine.in_flight.in_use == 0
    assert first.done()
    await first
    assert_idle(client, emulator)
