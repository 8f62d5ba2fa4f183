"""One batch, one stream: every way of driving a Batch reads each item once, submits it
once (counted on the emulator's report) and yields each index exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from batch_support import assert_each_submitted_once, assert_idle, distinct

from fashn_async import AsyncFashn, BatchResult, TryOnRequest, errors
from fashn_async.testing import Emulator

N = 10


def counted(items: list[TryOnRequest], reads: list[int]) -> Iterator[TryOnRequest]:
    """Yield ``items``, noting each read."""
    for index, item in enumerate(items):
        reads.append(index)
        yield item


async def test_async_for(client: AsyncFashn, emulator: Emulator) -> None:
    """A plain async for: each index once, one submission per item."""
    reads: list[int] = []
    indexes = [r.index async for r in client.batch(counted(distinct(emulator, N), reads))]
    assert sorted(indexes) == list(range(N))
    assert reads == list(range(N))
    assert_each_submitted_once(emulator, N)
    assert_idle(client, emulator)


async def test_anext_repeatedly(client: AsyncFashn, emulator: Emulator) -> None:
    """anext() N times yields N distinct indexes (it never restarts the input); then the
    batch keeps raising StopAsyncIteration."""
    reads: list[int] = []
    batch = client.batch(counted(distinct(emulator, N), reads))
    indexes = [(await anext(batch)).index for _ in range(N)]
    assert sorted(indexes) == list(range(N))
    for _ in range(2):
        with pytest.raises(StopAsyncIteration):
            await anext(batch)
    assert [r async for r in batch] == []
    assert reads == list(range(N))
    assert_each_submitted_once(emulator, N)
    assert_idle(client, emulator)


@pytest.mark.parametrize("source", ["list", "generator"])
async def test_second_async_for_after_break_continues(
    client: AsyncFashn, emulator: Emulator, source: str
) -> None:
    """A kept batch left by break continues where it stopped on the next async for (a
    list input is not read again from its start)."""
    reads: list[int] = []
    items = distinct(emulator, N)
    batch = client.batch(items if source == "list" else counted(items, reads), max_pending=4)
    first = []
    async for result in batch:
        first.append(result.index)
        if len(first) == 3:
            break
    await asyncio.sleep(60)  # paused: at most max_pending items read and not yet taken
    assert batch.progress.read <= 3 + 4
    rest = [r.index async for r in batch]
    assert sorted(first + rest) == list(range(N))
    assert source == "list" or reads == list(range(N))
    assert_each_submitted_once(emulator, N)
    assert_idle(client, emulator)


async def test_async_with(client: AsyncFashn, emulator: Emulator) -> None:
    """async with client.batch(...) as b, then async for b: the same one stream."""
    async with client.batch(distinct(emulator, N)) as batch:
        indexes = [r.index async for r in batch]
    assert sorted(indexes) == list(range(N))
    assert_each_submitted_once(emulator, N)
    assert_idle(client, emulator)
    with pytest.raises(errors.BatchClosedError, match="async with block was left"):
        await anext(batch)


async def test_two_tasks_pull_concurrently(client: AsyncFashn, emulator: Emulator) -> None:
    """Two tasks pulling from one batch (an async generator input) share one stream:
    the union of what they got is every index, once."""
    items = distinct(emulator, 2 * N)

    async def source() -> AsyncIterator[TryOnRequest]:
        for item in items:
            yield item

    batch = client.batch(source())
    got: dict[str, list[int]] = {"a": [], "b": []}

    async def pull(name: str) -> None:
        async for result in batch:
            got[name].append(result.index)
            await asyncio.sleep(0.5)  # a consumer that takes its time

    async with anyio.create_task_group() as tg:
        tg.start_soon(pull, "a")
        tg.start_soon(pull, "b")
    assert sorted(got["a"] + got["b"]) == list(range(2 * N))
    assert got["a"]
    assert got["b"]
    assert_each_submitted_once(emulator, 2 * N)
    assert_idle(client, emulator)


async def test_anext_then_async_for_then_anext(client: AsyncFashn, emulator: Emulator) -> None:
    """anext(), then async for, mixed on one batch: still one stream."""
    batch = client.batch(distinct(emulator, N))
    head = [(await anext(batch)).index, (await anext(batch)).index]
    tail = [r.index async for r in batch]
    assert sorted(head + tail) == list(range(N))
    with pytest.raises(StopAsyncIteration):
        await anext(batch)
    assert_each_submitted_once(emulator, N)


async def test_nothing_is_read_before_the_first_pull(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """Creating a batch reads and sends nothing; dropping it unused leaves nothing."""
    reads: list[int] = []
    batch = client.batch(counted(distinct(emulator, N), reads))
    await asyncio.sleep(30)
    assert reads == []
    assert emulator.report().accepted == []
    assert "new" in repr(batch)
    del batch
    assert_idle(client, emulator)


async def test_a_closed_batch_raises_a_typed_error(client: AsyncFashn, emulator: Emulator) -> None:
    """After aclose(), every way of iterating raises BatchClosedError; never a restart."""
    batch = client.batch(distinct(emulator, N))
    first = await anext(batch)
    await batch.aclose()
    await batch.aclose()  # twice is fine
    with pytest.raises(errors.BatchClosedError, match=r"aclose\(\) was called"):
        await anext(batch)
    with pytest.raises(errors.BatchClosedError):
        async for _ in batch:
            pass
    with pytest.raises(errors.BatchClosedError):
        async with batch:
            pass
    assert isinstance(first, BatchResult)
    assert len(emulator.report().accepted) <= N
    assert emulator.report().duplicates == 0
    assert_idle(client, emulator)


async def test_closing_the_client_closes_its_batches(emulator: Emulator) -> None:
    """Closing the client while a task iterates a batch: the remote predictions are
    cancelled before aclose() returns, the consumer gets BatchClosedError, and a new
    batch cannot start."""
    client = AsyncFashn(api_key=emulator.api_key, base_url=emulator.url)
    async with client:
        batch = client.batch(distinct(emulator, N))
        got: list[int] = []

        async def consume() -> None:
            async for result in batch:
                got.append(result.index)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(1)  # every POST is out, nothing finished
        await client.aclose()
        assert emulator.report().in_progress == 0
        with pytest.raises(errors.BatchClosedError, match="client was closed"):
            await task
    assert got == []
    report = emulator.report()
    assert report.accepted
    assert set(report.cancels) == {a.id for a in report.accepted}
    assert report.duplicates == 0
    with pytest.raises(errors.ClientClosedError):
        client.batch(distinct(emulator, 1))
