"""Every way of leaving a batch early cancels what runs on the server at once, holds no
slot or grant, and leaves no task; any exit is quiet (the suite fails on asyncio ERROR
records, tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import pytest
from batch_support import assert_idle, distinct, settle

from fashn_async import AsyncFashn, BatchEvents, Limits, Prediction, TryOnRequest, errors
from fashn_async.testing import Emulator, HttpFault, PredictionFault

N = 8
# Long enough that nothing finishes by itself in the second a prompt cancel may take.
SLOW = pytest.mark.emulator(latency=(20.0, 40.0), in_flight_limit=None)
MANY = pytest.mark.client(limits=Limits(in_flight=None))


async def break_inline(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """break out of `async for r in client.batch(...)`: the handle is dropped."""
    async for _ in client.batch(items):
        break


async def break_then_del(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """break out of a kept batch, then drop the last reference to it."""
    batch = client.batch(items)
    async for _ in batch:
        break
    del batch


async def body_raises_inline(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """An exception in the body of `async for r in client.batch(...)`."""
    with pytest.raises(RuntimeError, match="boom"):
        async for _ in client.batch(items):
            raise RuntimeError("boom")


async def consumer_cancelled_inline(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """The consuming task is cancelled while it waits for the next result."""
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in client.batch(items):
            first.set()

    task = asyncio.ensure_future(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def scope_cancelled_inline(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """An anyio cancel scope around the loop times out (the consumer's own deadline)."""
    with anyio.move_on_after(25):
        async for _ in client.batch(items):
            pass


async def aclose(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """aclose() from the loop body."""
    batch = client.batch(items)
    async for _ in batch:
        await batch.aclose()
        break


async def async_with_break(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """break, then the end of the async with block."""
    async with client.batch(items) as batch:
        async for _ in batch:
            break


async def async_with_body_raises(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """An exception in the body, inside async with."""
    with pytest.raises(RuntimeError, match="boom"):
        async with client.batch(items) as batch:
            async for _ in batch:
                raise RuntimeError("boom")


async def async_with_consumer_cancelled(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """The consuming task is cancelled in the body, inside async with."""
    first = asyncio.Event()

    async def consume() -> None:
        async with client.batch(items) as batch:
            async for _ in batch:
                first.set()
                await asyncio.sleep(3600)

    task = asyncio.ensure_future(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def async_with_anext_only(client: AsyncFashn, items: list[TryOnRequest]) -> None:
    """One anext() inside async with, then the block ends."""
    async with client.batch(items) as batch:
        await anext(batch)


# The exits that return only once the remote cancels are answered.
AWAITED: list[Callable[[AsyncFashn, list[TryOnRequest]], Awaitable[None]]] = [
    aclose,
    async_with_break,
    async_with_body_raises,
    async_with_consumer_cancelled,
    async_with_anext_only,
]
# The exits that drop the handle: the batch is closed from the loop's next turn.
DROPPED: list[Callable[[AsyncFashn, list[TryOnRequest]], Awaitable[None]]] = [
    break_inline,
    break_then_del,
    body_raises_inline,
    consumer_cancelled_inline,
    scope_cancelled_inline,
]


@SLOW
@MANY
@pytest.mark.parametrize("leave", AWAITED, ids=lambda f: f.__name__)
async def test_awaited_exit_cancels_before_it_returns(
    client: AsyncFashn,
    emulator: Emulator,
    leave: Callable[[AsyncFashn, list[TryOnRequest]], Awaitable[None]],
) -> None:
    """aclose() and leaving async with (by break, exception or cancellation) return only
    after every running prediction was cancelled on the server."""
    await leave(client, distinct(emulator, N))
    report = emulator.report()
    assert report.in_progress == 0
    assert report.cancels
    assert_all_cancelled(emulator)
    assert_idle(client, emulator)


@SLOW
@MANY
@pytest.mark.parametrize("leave", DROPPED, ids=lambda f: f.__name__)
async def test_dropped_batch_cancels_at_once(
    client: AsyncFashn,
    emulator: Emulator,
    leave: Callable[[AsyncFashn, list[TryOnRequest]], Awaitable[None]],
) -> None:
    """break, an exception or a cancellation out of `async for r in client.batch(...)`:
    every running prediction is cancelled within a second (they would run 20-40 s)."""
    await leave(client, distinct(emulator, N))
    took = await settle(client, within=1.0)
    assert took <= 1.0
    report = emulator.report()
    assert report.in_progress == 0
    assert_all_cancelled(emulator)
    assert report.cancels
    assert_idle(client, emulator)


@SLOW
@MANY
async def test_raise_on_error_closes_the_batch(client: AsyncFashn, emulator: Emulator) -> None:
    """raise_on_error raises the first failure after cancelling the rest remotely; the
    batch is closed."""
    emulator.inject(PredictionFault(name="PoseError", match="pose-bad"))
    items = distinct(emulator, N)
    items[0] = TryOnRequest(
        model_image=emulator.sample_image_url("model") + "?pose-bad",
        garment_image=emulator.sample_image_url("garment"),
        category="tops",
    )
    batch = client.batch(items, raise_on_error=True)
    with pytest.raises(errors.PoseError):
        async for _ in batch:
            pass
    assert emulator.report().in_progress == 0
    assert_idle(client, emulator)
    with pytest.raises(errors.BatchClosedError, match="raise_on_error"):
        await anext(batch)


@SLOW
@MANY
async def test_closing_the_client_while_a_batch_is_paused(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A kept batch left by break (still open) is closed by the client's aclose(): its
    predictions are cancelled before aclose() returns."""
    batch = client.batch(distinct(emulator, N))
    async for _ in batch:
        break
    assert emulator.report().in_progress > 0
    await client.aclose()
    assert emulator.report().in_progress == 0
    with pytest.raises(errors.BatchClosedError):
        await anext(batch)


@SLOW
@MANY
async def test_cancel_on_exit_false_leaves_them_running(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """cancel_on_exit=False: leaving by break cancels nothing remotely, frees every slot,
    and a later batch collects the predictions by id."""
    ids: list[str] = []
    async with client.batch(
        distinct(emulator, N), on_submitted=lambda i, pid: ids.append(pid), cancel_on_exit=False
    ) as batch:
        async for _ in batch:
            break
    assert emulator.report().cancels == []
    assert client._engine.in_flight.in_use == 0
    done = [r async for r in client.batch([Prediction(pid) for pid in ids])]
    assert all(r.ok for r in done)
    assert_idle(client, emulator)


def assert_all_cancelled(emulator: Emulator) -> None:
    """Every prediction that had not completed was cancelled (one that completed just
    before the exit, unseen by the client, may have been cancelled too, in vain)."""
    report = emulator.report()
    accepted = {a.id for a in report.accepted}
    completed = {pid for pid, status in report.statuses.items() if status == "completed"}
    assert accepted - completed <= set(report.cancels) <= accepted


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 5])
async def test_client_closed_as_the_batch_starts(emulator: Emulator, turns: int) -> None:
    """Closing the client within a few loop turns of a batch's first anext() (its task
    not yet begun, or just begun): the consumer gets BatchClosedError, nothing is left
    running, no stream is left open. (Closed before that first anext() even began, it is
    ClientClosedError.)"""
    client = AsyncFashn(api_key=emulator.api_key, base_url=emulator.url)
    async with client:
        batch = client.batch(distinct(emulator, 3))
        first = asyncio.ensure_future(anext(batch))
        for _ in range(turns):
            await asyncio.sleep(0)
        await client.aclose()
        expected = errors.ClientClosedError if turns == 0 else errors.BatchClosedError
        with pytest.raises(expected, match="client was closed"):
            await first
    assert emulator.report().in_progress == 0
    assert client._engine.in_flight.in_use == 0


@SLOW
@MANY
@pytest.mark.parametrize("turns", [(1,), (2,), (4,), (1, 3)], ids=str)
async def test_cancelled_aclose_ends_everything_first(
    client: AsyncFashn, emulator: Emulator, turns: tuple[int, ...]
) -> None:
    """The task awaiting batch.aclose() cancelled (once, or twice) after that many loop
    turns: CancelledError reaches it only after every running prediction was cancelled
    on the server and every task of the batch ended; the batch is closed."""
    batch = client.batch(distinct(emulator, N))
    await anext(batch)
    closing = asyncio.ensure_future(batch.aclose())
    for turn in range(max(turns) + 1):
        if turn in turns:
            closing.cancel()
        await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        await closing
    report = emulator.report()
    assert len(report.accepted) == N
    assert report.in_progress == 0
    assert_all_cancelled(emulator)
    assert_idle(client, emulator)
    with pytest.raises(errors.BatchClosedError, match="aclose"):
        await anext(batch)


@SLOW
@MANY
async def test_cancelled_client_aclose_ends_every_batch_first(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """The task awaiting client.aclose() cancelled: CancelledError reaches it only after
    every batch's predictions were cancelled on the server and their tasks ended."""
    batches = [client.batch(distinct(emulator, 2 * N)[i::2]) for i in range(2)]
    for batch in batches:
        await anext(batch)
    closing = asyncio.ensure_future(client.aclose())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    report = emulator.report()
    assert len(report.accepted) == 2 * N
    assert report.in_progress == 0
    assert_all_cancelled(emulator)
    assert client._engine.in_flight.in_use == 0
    for batch in batches:
        with pytest.raises(errors.BatchClosedError, match="client was closed"):
            await anext(batch)


#: The hook that notes when each POST goes out (loop time).
Sending = Callable[[int], None]


async def task_group_cancelled_inline(
    client: AsyncFashn, items: list[TryOnRequest], on_sending: Sending
) -> list[BaseException]:
    """An anyio task group running `async for r in client.batch(...)` is cancelled."""
    first = anyio.Event()

    async def consume() -> None:
        async for _ in client.batch(items, on_sending=on_sending):
            first.set()

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await first.wait()
        group.cancel_scope.cancel()
    return []


async def timeout_kept_inline(
    client: AsyncFashn, items: list[TryOnRequest], on_sending: Sending
) -> list[BaseException]:
    """asyncio.timeout ends `async for r in client.batch(...)`; the TimeoutError is kept."""
    kept: list[BaseException] = []
    try:
        async with asyncio.timeout(25):
            async for _ in client.batch(items, on_sending=on_sending):
                pass
    except TimeoutError as error:
        kept.append(error)
    return kept


async def cancelled_kept_inline(
    client: AsyncFashn, items: list[TryOnRequest], on_sending: Sending
) -> list[BaseException]:
    """The task running `async for r in client.batch(...)` is cancelled; the
    CancelledError it raised is kept."""
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in client.batch(items, on_sending=on_sending):
            first.set()

    task = asyncio.ensure_future(consume())
    await first.wait()
    task.cancel()
    kept: list[BaseException] = []
    try:
        await task
    except asyncio.CancelledError as error:
        kept.append(error)
    return kept


@SLOW
@pytest.mark.client(limits=Limits(in_flight=2))
@pytest.mark.parametrize(
    "leave",
    [task_group_cancelled_inline, timeout_kept_inline, cancelled_kept_inline],
    ids=lambda f: f.__name__,
)
async def test_dropped_by_cancellation_sends_nothing_more(
    client: AsyncFashn,
    emulator: Emulator,
    leave: Callable[[AsyncFashn, list[TryOnRequest], Sending], Awaitable[list[BaseException]]],
) -> None:
    """An unkept batch left by a cancellation whose exception outlives the loop (held by
    an anyio task group, or kept by the caller) is closed at once: no POST goes out
    after the exit, every running prediction is cancelled within a second. (Before: the
    exception's traceback kept the handle alive, and the batch went on sending.)"""
    loop = asyncio.get_running_loop()
    sends: list[float] = []
    kept = await leave(client, distinct(emulator, 3 * N), lambda _: sends.append(loop.time()))
    left_at = loop.time()
    await settle(client, within=1.0)
    await asyncio.sleep(60)  # the rest would have been sent by now, were it open
    assert [at for at in sends if at > left_at] == []
    report = emulator.report()
    assert len(report.accepted) == len(sends) < 3 * N
    assert report.in_progress == 0
    assert_all_cancelled(emulator)
    assert_idle(client, emulator)
    assert all(isinstance(error, BaseException) for error in kept)  # kept until here


@SLOW
@MANY
async def test_kept_batch_left_by_cancellation_stays_open(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A batch kept in a variable and left by a timeout stays open, as after a break: a
    later `async for` yields the rest, each index once, each item submitted once."""
    batch = client.batch(distinct(emulator, N))
    first: list[int] = []
    with anyio.move_on_after(25):
        async for result in batch:
            first.append(result.index)
    assert len(first) < N
    rest = [r.index async for r in batch]
    assert sorted(first + rest) == list(range(N))
    assert len(emulator.report().accepted) == N
    assert_idle(client, emulator)


@pytest.mark.parametrize("on_the_wire", [False, True])
async def test_may_cancel_says_which_predictions_are_sent_a_cancel(
    client: AsyncFashn, emulator: Emulator, on_the_wire: bool
) -> None:
    """``BatchEvents.may_cancel`` is asked, with the item's index and prediction id,
    before the batch sends a prediction a cancel: those it says no to are left running
    (a journal that did not record the cancel), the others cancelled, whether they were
    being polled or their POST was on the wire when the batch was left."""
    if on_the_wire:
        emulator.inject(HttpFault("slow", route="run", delay=3.0, times=4))
    asked: list[tuple[int, str]] = []

    class Events(BatchEvents):
        def may_cancel(self, index: int, prediction_id: str) -> bool:
            asked.append((index, prediction_id))
            return index % 2 == 0

    async with client.batch(distinct(emulator, 4), events=Events()) as batch:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await anext(batch)
    report = emulator.report()
    assert sorted(i for i, _ in asked) == [0, 1, 2, 3]
    assert sorted(report.cancels) == sorted(pid for i, pid in asked if i % 2 == 0)
    assert {a.id for a in report.accepted} == {pid for _, pid in asked}
    assert client._engine.in_flight.in_use == 0
