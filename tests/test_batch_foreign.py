"""What the batch did not cause is not the batch's own end: a CancelledError that user code
raises while nothing cancels the batch (its input, an image's ``read()``, a hook) is that
code's failure, told like any other; a batch first driven from another event loop
starts nothing there. Each way, the POSTs counted by the emulator match the results
yielded, and the client goes on working."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from batch_support import assert_each_submitted_once, assert_idle, distinct

from fashn_async import AsyncFashn, BatchEvents, BatchProgress, BatchResult, TryOnRequest, errors
from fashn_async.testing import Emulator, HttpFault

N = 8
AT = 3  # the item at which user code raises


async def cancelled_future() -> None:
    """Await a future someone else cancelled: a CancelledError nobody asked of us."""
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


async def later_batch_works(client: AsyncFashn, emulator: Emulator, seeds: range) -> None:
    """A later batch of this client runs to its end (its own seeds: no payload again)."""
    items = distinct(emulator, seeds.stop)[seeds.start :]
    results = [r async for r in client.batch(items)]
    assert sorted(r.index for r in results) == list(range(len(items)))
    assert all(r.ok for r in results)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_input_raising_cancelled_error_is_a_batch_input_error(
    client: AsyncFashn, emulator: Emulator, kind: str
) -> None:
    """An input that raises a CancelledError of its own ends the batch with
    BatchInputError after the items read before it are finished and yielded; the client
    stays usable. (Before: nothing yielded, nothing raised, and the client's next batch
    raised RuntimeError.)"""
    items = distinct(emulator, N)

    def sync_input() -> Iterator[TryOnRequest]:
        yield from items[:AT]
        raise asyncio.CancelledError

    async def async_input() -> AsyncIterator[TryOnRequest]:
        for item in items[:AT]:
            yield item
        await cancelled_future()

    source = sync_input() if kind == "sync" else async_input()
    results: list[BatchResult] = []
    with pytest.raises(errors.BatchInputError, match=f"reading item {AT} .*CancelledError") as e:
        async for result in client.batch(source):
            results.append(result)
    assert isinstance(e.value.__cause__, asyncio.CancelledError)
    assert sorted(r.index for r in results) == list(range(AT))
    assert all(r.ok for r in results)
    assert_each_submitted_once(emulator, AT)
    assert_idle(client, emulator)
    await later_batch_works(client, emulator, range(N, N + 2))
    assert_each_submitted_once(emulator, AT + 2)


class CancelledRead:
    """An upload whose async read() awaits a future someone else cancelled."""

    async def read(self, size: int = -1) -> bytes:
        await cancelled_future()
        return b""


async def test_image_read_raising_cancelled_error_fails_its_item(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """An image whose read() raises a CancelledError of its own is that item's failed
    result (ImageInputError naming its index); every other item is sent once and
    yielded. (Before: the batch ended at once, nothing yielded, nothing raised.)"""
    items: list[Any] = distinct(emulator, N)
    items[AT] = TryOnRequest(
        model_image=CancelledRead(),
        garment_image=emulator.sample_image_url("garment"),
        category="tops",
    )
    results = {r.index: r async for r in client.batch(items)}
    assert sorted(results) == list(range(N))
    error = results.pop(AT).error
    assert isinstance(error, errors.ImageInputError)
    assert f"batch item {AT}:" in error.message
    assert "read() failed: CancelledError" in error.message
    assert all(r.ok for r in results.values())
    assert_each_submitted_once(emulator, N - 1)
    assert_idle(client, emulator)


class CancellingEvents(BatchEvents):
    """Raises a CancelledError of its own from one hook, at item AT (its Nth call for
    progress); ``sending`` may instead return an awaitable that does."""

    def __init__(self, hook: str) -> None:
        self.hook = hook
        self.calls = 0

    def _maybe(self, name: str, index: int) -> None:
        if name == self.hook and index == AT:
            raise asyncio.CancelledError

    def sending(self, index: int) -> Any:
        self._maybe("sending", index)
        if self.hook == "sending-awaited" and index == AT:
            return cancelled_future()
        return None

    def submitted(self, index: int, prediction_id: str) -> None:
        self._maybe("submitted", index)

    def not_created(self, index: int) -> None:
        self._maybe("not_created", index)

    def progress(self, progress: BatchProgress) -> None:
        self.calls += 1
        self._maybe("progress", self.calls)


@pytest.mark.parametrize(
    "hook", ["sending", "sending-awaited", "submitted", "not_created", "progress"]
)
async def test_hook_raising_cancelled_error_is_an_event_hook_error(
    client: AsyncFashn, emulator: Emulator, hook: str
) -> None:
    """A hook raising a CancelledError of its own fails its item and stops the batch with
    EventHookError, as any raising hook does: every item read is yielded once, every
    POST made belongs to a yielded result, a prediction made for the hook's item is
    cancelled, the client stays usable. (Before: the batch ended silently.)"""
    if hook == "not_created":
        emulator.inject(HttpFault(kind="error_5xx", route="run", times=N, status=503))
    results: list[BatchResult] = []
    with pytest.raises(errors.EventHookError, match="the batch stopped") as raised:
        async for result in client.batch(distinct(emulator, N), events=CancellingEvents(hook)):
            results.append(result)
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)
    indexes = [r.index for r in results]
    assert sorted(indexes) == list(range(len(results)))
    assert len(results) >= AT
    failed = [r for r in results if isinstance(r.error, errors.EventHookError)]
    assert any("was not sent" not in r.error.message for r in failed if r.error)
    report = emulator.report()
    made = {r.prediction_id for r in results if r.prediction_id is not None}
    assert {a.id for a in report.accepted} == made
    assert report.duplicates == 0
    assert_idle(client, emulator)
    await later_batch_works(client, emulator, range(N, N + 2))


async def test_first_anext_from_another_loop_raises_and_starts_nothing(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A batch first driven from another thread's event loop raises EventLoopError there,
    sends nothing and starts no task; the same batch then runs on its client's loop, and
    so do later batches. (Before: an EventLoopError result, and the client's batch group
    left in the other loop: later batches raised RuntimeError.)"""
    batch = client.batch(distinct(emulator, 3))
    outcome: list[BaseException | BatchResult] = []

    def other_thread() -> None:
        async def pull() -> None:
            try:
                outcome.append(await anext(batch))
            except BaseException as exc:  # what it was is the test
                outcome.append(exc)

        asyncio.run(pull())

    await asyncio.to_thread(other_thread)
    assert len(outcome) == 1
    assert isinstance(outcome[0], errors.EventLoopError), outcome
    assert emulator.report().accepted == []
    assert len(client._batches) == 0
    results = [r async for r in batch]
    assert sorted(r.index for r in results) == [0, 1, 2]
    assert all(r.ok for r in results)
    await later_batch_works(client, emulator, range(3, 5))
    assert_each_submitted_once(emulator, 5)
    assert_idle(client, emulator)


class _EndsWrongly:
    """A sync iterator whose ``__next__`` raises StopAsyncIteration: not its end."""

    def __init__(self, items: list[TryOnRequest]) -> None:
        self._items = iter(items)

    def __iter__(self) -> _EndsWrongly:
        return self

    def __next__(self) -> TryOnRequest:
        item = next(self._items, None)
        if item is None:
            raise StopAsyncIteration
        return item


async def test_the_other_kind_of_stop_is_an_input_error(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A sync input raising StopAsyncIteration has not ended (only StopIteration ends it):
    BatchInputError after the items read before it. (Before: the batch ended as if done.)"""
    items = distinct(emulator, AT)
    results: list[BatchResult] = []
    with pytest.raises(errors.BatchInputError, match="StopAsyncIteration"):
        async for result in client.batch(_EndsWrongly(items)):
            results.append(result)
    assert sorted(r.index for r in results) == list(range(AT))


@pytest.mark.emulator(latency=(30, 40))
@pytest.mark.parametrize("stop", ["credits", "hook"])
async def test_a_stop_lets_predictions_given_as_items_finish(
    client: AsyncFashn, emulator: Emulator, stop: str
) -> None:
    """Predictions submitted earlier, given as items, then requests: a stop (out of
    credits, a hook raising) refuses only what was not sent; the given predictions, never
    sent by the batch, are polled to their end and yielded, not cancelled. (Before: an
    AssertionError ended every worker and they were cancelled on the server.)"""
    earlier = [await client.submit(item) for item in distinct(emulator, 2)]
    requests = distinct(emulator, 5)[2:]

    class Raising(BatchEvents):
        def submitted(self, index: int, prediction_id: str) -> None:
            if index == 3:
                raise RuntimeError("a hook of the user's")

    if stop == "credits":
        emulator.inject(HttpFault("throttle", route="run", code="OutOfCredits"))
    events = Raising() if stop == "hook" else None
    results: list[BatchResult] = []
    expected = errors.OutOfCreditsError if stop == "credits" else errors.EventHookError
    with pytest.raises(expected):
        async for result in client.batch([*earlier, *requests], events=events):
            results.append(result)
    by_index = {r.index: r for r in results}
    assert by_index[0].ok
    assert by_index[1].ok
    report = emulator.report()
    assert report.statuses[earlier[0].id] == report.statuses[earlier[1].id] == "completed"
    assert earlier[0].id not in report.cancels
    assert earlier[1].id not in report.cancels
