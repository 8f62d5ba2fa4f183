"""Closing a client under calls in flight: a web server's shutdown cancels its handlers,
then closes the client at once. What the cancelled calls started must still be cancelled
on the server (else it runs on and is charged, with nobody to collect it), and a call the
close cuts short raises one of our errors, never aiohttp's own, nor the key.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from test_network_secrets import KEY, assert_no_key

from fashn_async import AsyncFashn, TryOnRequest, errors
from fashn_async.testing import Emulator, EmulatorConfig, HttpFault


def request_for(emulator: Emulator) -> TryOnRequest:
    return TryOnRequest(
        model_image=emulator.sample_image_url("model"),
        garment_image=emulator.sample_image_url("garment"),
        category="tops",
    )


async def until(condition: object, step: float = 0.25) -> None:
    """Sleep (loop time) until ``condition()`` holds."""
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(step)


def assert_six_cancelled_none_charged(emulator: Emulator) -> None:
    """Six predictions were created, each cancelled on the server, none charged."""
    report = emulator.report()
    assert len(report.accepted) == 6
    assert sorted(report.cancels) == sorted(s.id for s in report.accepted)
    assert set(report.statuses.values()) == {"canceled"}
    assert report.credits_used == 0


async def runs_in_flight(
    emulator: Emulator, client: AsyncFashn, count: int, when: str
) -> list[asyncio.Task[object]]:
    """``count`` run()s under way: 6 polling (``when="polling"``), or 6 with their POST on
    the wire (``"posting"``: the emulator holds each 5 s)."""
    if when == "posting":
        emulator.inject(HttpFault("slow", route="run", delay=5.0))
    tasks = [asyncio.create_task(client.run(request_for(emulator))) for _ in range(count)]
    if when == "polling":
        await until(lambda: len(emulator.report().accepted) == 6)
    else:
        await until(lambda: emulator.report().faults.get("run:slow", 0) == 6)
    return tasks  # type: ignore[return-value]


@pytest.mark.emulator(latency=(30, 40))
@pytest.mark.parametrize("when", ["polling", "posting"])
async def test_runs_cancelled_as_the_client_closes_are_cancelled_on_the_server(
    emulator: Emulator, when: str
) -> None:
    """10 run()s (6 may be in progress), cancelled, and the client closed at once: every
    prediction they created is cancelled on the server before aclose() returns, those
    whose POST was on the wire included (let finish, then cancelled)."""
    client = AsyncFashn(api_key=emulator.api_key, base_url=emulator.url)
    await client.__aenter__()
    tasks = await runs_in_flight(emulator, client, 10, when)
    for task in tasks:
        task.cancel()
    await client.aclose()
    ended = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(e, asyncio.CancelledError) for e in ended), ended
    assert_six_cancelled_none_charged(emulator)


@pytest.mark.emulator(latency=(30, 40))
async def test_a_gather_cancelled_inside_async_with_cancels_its_predictions(
    emulator: Emulator,
) -> None:
    """``async with AsyncFashn() as c: await asyncio.gather(*runs)``, the task cancelled
    (Ctrl-C, a handler's timeout): leaving the block cancels every prediction first."""

    async def handler() -> None:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            await asyncio.gather(*(client.run(request_for(emulator)) for _ in range(6)))

    task = asyncio.create_task(handler())
    await until(lambda: len(emulator.report().accepted) == 6)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = emulator.report()
    assert sorted(report.cancels) == sorted(s.id for s in report.accepted)
    assert report.credits_used == 0


@pytest.mark.emulator(api_key=KEY)
@pytest.mark.parametrize("turns", range(8))
async def test_calls_cut_short_by_a_close_raise_only_our_errors(
    emulator: Emulator, turns: int
) -> None:
    """The client closed ``turns`` loop turns after calls began (a request between the
    session check and its first byte, on the wire, waiting for the budget): each call
    raises one of our errors (aiohttp asserts when its session closes under a request
    starting), and none holds the key."""
    client = AsyncFashn(api_key=KEY, base_url=emulator.url)
    await client.__aenter__()
    prediction = await client.submit(request_for(emulator))
    emulator.inject(HttpFault("slow", route="status", delay=2.0, probability=0.5))
    calls = [client.status(prediction.id) for _ in range(6)]
    calls += [client.credits() for _ in range(4)]
    calls += [client.run(request_for(emulator)) for _ in range(4)]
    tasks = [asyncio.create_task(call) for call in calls]  # type: ignore[arg-type]
    for _ in range(turns):
        await asyncio.sleep(0)
    await client.aclose()
    for ended in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(ended, BaseException):
            assert isinstance(ended, errors.FashnError), repr(ended)
            assert_no_key(ended)


@pytest.mark.emulator(latency=(30, 40))
@pytest.mark.parametrize("when", ["polling", "posting"])
async def test_calls_in_progress_when_the_client_closes_end_as_a_cancel_would(
    emulator: Emulator, when: str
) -> None:
    """run()s not cancelled at all, the client closed under them (its POST on the wire, or
    polling): each prediction created is cancelled on the server before aclose() returns
    (none runs on, charged and lost), and each run() raises ClientClosedError."""
    client = AsyncFashn(api_key=emulator.api_key, base_url=emulator.url)
    await client.__aenter__()
    tasks = await runs_in_flight(emulator, client, 6, when)
    await client.aclose()
    ended = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(e, errors.ClientClosedError) for e in ended), ended
    assert_six_cancelled_none_charged(emulator)
    with pytest.raises(errors.ClientClosedError):
        await client.run(request_for(emulator))


@pytest.mark.emulator(latency=(30, 40))
@pytest.mark.parametrize("turns", [0, 1, 2, 3, 5, 8])
async def test_a_cancel_that_comes_while_the_client_closes_loses_nothing(
    emulator: Emulator, turns: int
) -> None:
    """aclose() begun, then the run()'s task cancelled ``turns`` loop turns later (a web
    app that closes its client on shutdown, then cancels its handlers): the prediction is
    cancelled on the server all the same."""
    client = AsyncFashn(api_key=emulator.api_key, base_url=emulator.url)
    await client.__aenter__()
    task = asyncio.create_task(client.run(request_for(emulator)))
    await until(lambda: len(emulator.report().accepted) == 1)
    closing = asyncio.create_task(client.aclose())
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    await closing
    with pytest.raises((asyncio.CancelledError, errors.ClientClosedError)):
        await task
    report = emulator.report()
    assert report.cancels == [report.accepted[0].id]
    assert report.credits_used == 0


async def test_a_cancelled_aclose_still_closes_every_session(emulator: Emulator) -> None:
    """aclose() cancelled again and again while it closes: it finishes closing (every
    aiohttp session closed, the GETs' and the POSTs'), then raises the cancel."""
    client = AsyncFashn(api_key=emulator.api_key, base_url=emulator.url)
    await client.__aenter__()
    await client.submit(request_for(emulator))  # both sessions have a connection
    await client.credits()
    transport = client._transport
    sessions = [transport._session, transport._posts]
    closing = asyncio.create_task(client.aclose())
    for _ in range(20):
        await asyncio.sleep(0)
        closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert all(session is not None and session.closed for session in sessions)


@pytest.mark.parametrize("ending", ["left running", "cancelled as the loop ends", "closed"])
def test_a_client_left_open_is_closed_with_its_loop(ending: str) -> None:
    """A client opened in one ``asyncio.run()`` (a startup hook) and never closed there:
    the loop's end cancels its calls (the prediction running is cancelled on the server,
    the session still open for it) and then closes the client on that loop, so aiohttp
    has no session left to warn about (the suite makes warnings errors); an ``aclose()``
    from another loop afterwards does nothing (it raised EventLoopError, and the client
    could never be closed), nor after a client closed as usual. A call cancelled just
    before the loop ends has its remote cancel cut by the loop's end (asyncio.run cancels
    every task, that one's too): it is sent once more (it may not have reached the
    server; twice is harmless, a cancel being idempotent)."""
    ready, stop, box = threading.Event(), threading.Event(), dict[str, Any]()

    def serve() -> None:
        async def main() -> None:
            async with Emulator(EmulatorConfig(time_scale=0.01, latency=(600, 900))) as emu:
                box["emu"] = emu
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.01)
                box["report"] = emu.report()

        asyncio.run(main())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert ready.wait(30)
        emu: Emulator = box["emu"]
        kept: dict[str, AsyncFashn] = {}
        running: list[asyncio.Future[object]] = []

        async def startup() -> None:
            client = emu.client()
            await client.__aenter__()
            kept["client"] = client
            running.append(asyncio.ensure_future(client.run(request_for(emu))))  # at its end
            for _ in range(3000):  # its id back (a cancel then knows what to cancel)
                if emu.report().accepted:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            if ending == "cancelled as the loop ends":
                running[0].cancel()  # (its remote cancel is under way as main returns)
            elif ending == "closed":
                await client.aclose()

        asyncio.run(startup())
        client = kept["client"]
        assert "closed" in repr(client._transport)
        asyncio.run(client.aclose())  # another loop, later: nothing left to do
    finally:
        stop.set()
        thread.join(30)
    report = box["report"]
    assert len(report.accepted) == 1
    # Cancelled on the server: a cancel the loop's end cut is sent once more, so the
    # server may hear it twice when the first had reached it (a cancel is idempotent).
    assert report.cancels
    assert set(report.cancels) == {report.accepted[0].id}
    if ending == "closed":
        assert isinstance(running[0].exception(), errors.ClientClosedError)
    else:
        assert running[0].cancelled()
