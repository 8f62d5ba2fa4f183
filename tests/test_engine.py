"""The concurrency engine under the emulator's strict limits: limits, budget, batch."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterator

import attrs
import pytest

from fashn_async import (
    AsyncFashn,
    BatchProgress,
    Limits,
    Prediction,
    Rate,
    TryOnRequest,
    errors,
)
from fashn_async.testing import Emulator, HttpFault, PredictionFault, WindowLimit


def requests_for(emulator: Emulator, n: int, **fields: object) -> list[TryOnRequest]:
    """n valid try-ons of the emulator's samples, each with its own seed."""
    return [
        TryOnRequest(
            model_image=emulator.sample_image_url("model"),
            garment_image=emulator.sample_image_url("garment"),
            category="tops",
            seed=i,
            **fields,  # type: ignore[arg-type]
        )
        for i in range(n)
    ]


@pytest.mark.emulator(in_flight_limit=None)
@pytest.mark.client(limits=Limits(in_flight=None, margin=0.0))
async def test_batch_at_the_bound(client: AsyncFashn, emulator: Emulator) -> None:
    """N=60 at 25/60 s: zero 429s, <=25 in any window, done in floor((N-1)/R)*W + latency."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    results = [r async for r in client.batch(requests_for(emulator, 60))]
    elapsed = loop.time() - start
    report = emulator.report()
    assert sorted(r.index for r in results) == list(range(60))
    assert all(r.ok for r in results)
    assert report.rejected == {}
    assert report.max_submissions_in_window == 25
    assert len(report.accepted) == 60
    # floor(59/25) * 60 = 120 s, plus the latency of the last window's predictions: within
    # 1.05 x the first plus the second, issue 13's throughput goal. (A bound of 2 s on
    # the last one's detection lag failed once in a dozen suite runs: 2 s is the p95 over all
    # predictions, and the per-class poller's first polls are dithered at random.)
    accepted = sorted(report.accepted, key=lambda a: a.time)
    latency = max(report.terminal_at[a.id] - a.time for a in accepted[50:])
    assert 120 <= elapsed <= 1.05 * 120 + latency


@pytest.mark.emulator(in_flight_limit=None)
@pytest.mark.client(limits=Limits(in_flight=None, margin=0.0))
async def test_paced_status_budget_keeps_the_tail_short(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """25 running at once want ~26 status calls a second from a budget of 5: paced, the
    budget keeps flowing to the likeliest done, so N=100 ends within 3 % of the bound."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    results = [r async for r in client.batch(requests_for(emulator, 100), max_pending=200)]
    elapsed = loop.time() - start
    report = emulator.report()
    assert all(r.ok for r in results)
    assert report.rejected == {}
    assert report.max_status_in_window <= 50
    accepted = sorted(report.accepted, key=lambda a: a.time)
    last_latency = max(report.terminal_at[a.id] - a.time for a in accepted[75:])
    bound = 3 * 60.0 + last_latency  # floor(99/25) windows + the last window's latency
    # 1.6-1.9 % over the bound measured (the same before and after the fresh POST
    # connections); 2.15 % once, a CI run with the machine loaded.
    assert bound <= elapsed <= bound * 1.03


def best_makespan(latencies: list[float], rate: int, window: float, slots: int) -> float:
    """The earliest a batch can end: submissions in the given order and latencies, no more
    than ``rate`` in any ``window`` and no more than ``slots`` running at once."""
    starts: list[float] = []
    free = [0.0] * slots
    end = 0.0
    for i, latency in enumerate(latencies):
        start = heapq.heappop(free)
        if i >= rate:
            start = max(start, starts[i - rate] + window)
        starts.append(start)
        heapq.heappush(free, start + latency)
        end = max(end, start + latency)
    return end


def test_best_makespan() -> None:
    """The yardstick itself: the window binds, the slots bind, a long one sets the end."""
    assert best_makespan([10.0] * 4, rate=2, window=60.0, slots=9) == 70.0
    assert best_makespan([10.0] * 4, rate=9, window=60.0, slots=2) == 20.0
    assert best_makespan([5.0, 1.0, 1.0], rate=9, window=60.0, slots=2) == 5.0


@pytest.mark.client(limits=Limits(margin=0.0))
async def test_batch_at_the_bound_with_the_in_flight_cap(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """Default limits on both sides (in flight 6): within 2 % of the best schedule possible.

    floor((N-1)/R)*W + latency assumes the first R run at once, which 6 slots forbid; the
    yardstick here is the best schedule under both caps, given the latencies the server
    drew (in the order it accepted the submissions).
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    results = [r async for r in client.batch(requests_for(emulator, 60))]
    elapsed = loop.time() - start
    report = emulator.report()
    assert all(r.ok for r in results)
    assert report.rejected == {}
    accepted = sorted(report.accepted, key=lambda a: a.time)
    latencies = [report.terminal_at[a.id] - a.time for a in accepted]
    best = best_makespan(latencies, rate=25, window=60.0, slots=6)
    assert best <= elapsed <= best * 1.02


async def test_batch_respects_every_default_limit(client: AsyncFashn, emulator: Emulator) -> None:
    """With default limits on both sides: no 429 of any kind, in flight never above 6."""
    results = [r async for r in client.batch(requests_for(emulator, 40))]
    report = emulator.report()
    assert all(r.ok for r in results)
    assert report.rejected == {}
    assert report.max_in_progress <= 6
    assert report.max_submissions_in_window <= 25
    assert report.max_status_in_window <= 50


@pytest.mark.emulator(in_flight_limit=None, submit_limit=None, latency=(5.0, 11.0))
@pytest.mark.client(limits=Limits(in_flight=None, submit=None))
async def test_status_budget_with_many_in_flight(client: AsyncFashn, emulator: Emulator) -> None:
    """150 predictions in flight share 50 status calls per 10 s and never exceed them."""
    results = [r async for r in client.batch(requests_for(emulator, 150), max_pending=300)]
    report = emulator.report()
    assert all(r.ok for r in results)
    assert report.max_status_in_window <= 50
    assert report.rejected == {}
    assert report.max_in_progress > 100


@pytest.mark.client(limits=Limits(in_flight=3))
@pytest.mark.emulator(in_flight_limit=None)
async def test_in_flight_cap(client: AsyncFashn, emulator: Emulator) -> None:
    """Never more predictions running than Limits.in_flight, runs and batches together."""
    batch = client.batch(requests_for(emulator, 10))
    runs = [client.run(r) for r in requests_for(emulator, 4)]
    collected = asyncio.gather(*runs)
    results = [r async for r in batch]
    await collected
    assert len(results) == 10
    assert emulator.report().max_in_progress <= 3


async def test_failures_are_values(client: AsyncFashn, emulator: Emulator) -> None:
    """A failing pair yields an error result; the others complete; indexes match input."""
    emulator.inject(PredictionFault(name="PoseError", match="pose-bad"))
    good = requests_for(emulator, 4)
    bad = TryOnRequest(
        model_image=emulator.sample_image_url("model") + "?pose-bad",
        garment_image=emulator.sample_image_url("garment"),
        category="tops",
    )
    items = [good[0], bad, good[1], {"category": "hats"}, good[2], ("x", "y", "tops")]
    results = {r.index: r async for r in client.batch(items)}
    assert sorted(results) == list(range(6))
    assert isinstance(results[1].error, errors.PoseError)
    assert results[1].prediction_id
    assert isinstance(results[3].error, errors.InvalidRequestError)
    assert isinstance(results[5].error, errors.ImageInputError)
    assert [results[i].ok for i in (0, 2, 4)] == [True, True, True]
    assert results[0].request is good[0]


async def test_raise_on_error(client: AsyncFashn, emulator: Emulator) -> None:
    """raise_on_error=True raises the first failure and cancels the rest remotely."""
    emulator.inject(PredictionFault(name="NSFWError", match="nsfw"))
    items = requests_for(emulator, 3)
    items.insert(
        0,
        TryOnRequest(
            model_image=emulator.sample_image_url("model") + "?nsfw",
            garment_image=emulator.sample_image_url("garment"),
            category="tops",
        ),
    )
    with pytest.raises(errors.PredictionError):
        async for _ in client.batch(items, raise_on_error=True):
            pass
    assert client._engine.in_flight.in_use == 0


async def test_lazy_input(client: AsyncFashn, emulator: Emulator) -> None:
    """A generator is pulled only as far as in-flight room allows, not to the end."""
    pulled = 0
    template = requests_for(emulator, 1)[0]

    def endless() -> Iterator[TryOnRequest]:
        nonlocal pulled
        while True:
            pulled += 1
            yield template

    seen = 0
    async for _ in client.batch(endless(), max_pending=8):
        seen += 1
        if seen == 5:
            break
    assert pulled <= 5 + 8 + 1


async def test_async_iterable_input_and_progress(client: AsyncFashn, emulator: Emulator) -> None:
    """Async iterables work; progress counts end consistent."""
    snapshots: list[BatchProgress] = []

    async def gen():  # type: ignore[no-untyped-def]
        for r in requests_for(emulator, 5):
            yield r

    batch = client.batch(gen(), on_progress=lambda p: snapshots.append(attrs.evolve(p)))
    results = [r async for r in batch]
    assert len(results) == 5
    assert batch.progress == BatchProgress(read=5, submitted=5, running=0, done=5, failed=0)
    assert snapshots[0].read == 1
    assert max(s.running for s in snapshots) >= 1


@pytest.mark.emulator(credits=3)
async def test_out_of_credits_stops_the_batch(client: AsyncFashn, emulator: Emulator) -> None:
    """OutOfCredits stops submitting and is raised clearly after the started ones finish."""
    seen = []
    with pytest.raises(errors.OutOfCreditsError, match="stopped submitting"):
        async for result in client.batch(requests_for(emulator, 20)):
            seen.append(result)
    assert sum(r.ok for r in seen) == 3
    assert len(emulator.report().accepted) == 3


async def test_concurrent_runs_share_one_engine(client: AsyncFashn, emulator: Emulator) -> None:
    """Many concurrent run() calls (a web service) get the same limits: no 429s."""
    results = await asyncio.gather(*(client.run(r) for r in requests_for(emulator, 30)))
    report = emulator.report()
    assert len(results) == 30
    assert report.rejected == {}
    assert report.max_in_progress <= 6


async def test_journal_hooks_come_in_order(client: AsyncFashn, emulator: Emulator) -> None:
    """on_sending fires before the POST, on_submitted after it with the server's id."""
    events: list[tuple[str, int, str | None]] = []

    def sending(index: int) -> None:
        # Nothing of this item has reached the server yet.
        events.append(("sending", index, None))

    def submitted(index: int, prediction_id: str) -> None:
        events.append(("submitted", index, prediction_id))

    batch = client.batch(requests_for(emulator, 5), on_sending=sending, on_submitted=submitted)
    results = {r.index: r async for r in batch}
    for index in range(5):
        mine = [e for e in events if e[1] == index]
        assert [kind for kind, _, _ in mine] == ["sending", "submitted"]
        assert mine[1][2] == results[index].prediction_id
    assert sorted(a.id for a in emulator.report().accepted) == sorted(
        r.prediction_id
        for r in results.values()  # type: ignore[misc]
    )


async def test_resumed_predictions_are_polled_not_resubmitted(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """Prediction(id) items are waited for; the server sees no new submission for them."""
    earlier = [await client.submit(r) for r in requests_for(emulator, 3)]
    fresh = requests_for(emulator, 2)
    items = [*earlier, *fresh]
    results = {r.index: r async for r in client.batch(items)}
    report = emulator.report()
    assert len(report.accepted) == 5
    assert [results[i].prediction_id for i in range(3)] == [p.id for p in earlier]
    assert all(r.ok and r.output for r in results.values())
    assert results[0].request is earlier[0]


async def test_leaving_early_can_leave_predictions_running(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """cancel_on_exit=False: leaving early cancels nothing; a later batch collects them."""
    ids: dict[int, str] = {}
    batch = client.batch(
        requests_for(emulator, 6),
        on_submitted=lambda index, pid: ids.__setitem__(index, pid),
        cancel_on_exit=False,
    )
    async with batch:
        async for _ in batch:
            break
    assert not emulator.report().cancels
    assert len(ids) >= 2
    async for result in client.batch([Prediction(pid) for pid in ids.values()]):
        assert result.ok


async def test_wait_for_an_existing_prediction(client: AsyncFashn, emulator: Emulator) -> None:
    """client.wait() polls an id to its end and returns the final status, failed or not."""
    emulator.inject(PredictionFault(name="PoseError", match="pose-bad"))
    good = await client.submit(requests_for(emulator, 1)[0])
    bad = await client.submit(
        model_image=emulator.sample_image_url("model") + "?pose-bad",
        garment_image=emulator.sample_image_url("garment"),
        category="tops",
    )
    done, failed = await asyncio.gather(client.wait(good.id), client.wait(bad.id))
    assert done.status == "completed"
    assert done.output
    assert failed.status == "failed"
    with pytest.raises(errors.PoseError):
        failed.raise_for_status()
    with pytest.raises(errors.InvalidRequestError):
        await client.wait("  ")


async def test_not_created_is_heard_before_the_resend(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A 503 answer proves nothing was created: on_not_created fires before the re-send."""
    emulator.inject(HttpFault(kind="error_5xx", route="run", times=1, status=503))
    events: list[str] = []
    batch = client.batch(
        requests_for(emulator, 1),
        on_sending=lambda i: events.append("sending"),
        on_not_created=lambda i: events.append("not_created"),
        on_submitted=lambda i, pid: events.append("submitted"),
    )
    results = [r async for r in batch]
    assert results[0].ok
    assert events == ["sending", "not_created", "sending", "submitted"]
    assert len(emulator.report().accepted) == 1


async def test_an_answer_that_lands_while_leaving_is_heard_then_cancelled(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A POST on the wire when the consumer leaves: its id reaches on_submitted, and the
    prediction it created is cancelled on the server."""
    emulator.inject(HttpFault(kind="slow", route="run", delay=5.0, times=1))
    heard: list[str] = []
    batch = client.batch(requests_for(emulator, 1), on_submitted=lambda i, pid: heard.append(pid))

    async def consume() -> None:
        async for _ in batch:
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(1.0)  # the POST is on the wire
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = emulator.report()
    assert [a.id for a in report.accepted] == heard
    assert set(report.cancels) == set(heard)


@pytest.mark.client(limits=Limits(in_flight=2))
async def test_batch_running_is_read_from_the_one_in_flight_owner(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """progress.running counts the batch's own predictions, as InFlight counts them."""
    held = [await client.submit(r) for r in requests_for(emulator, 2)]  # hold both slots
    in_flight = client._engine.in_flight
    assert (in_flight.in_use, in_flight.running()) == (2, 0)  # held, not waited for
    snapshots: list[BatchProgress] = []
    items = [Prediction(p.id) for p in held] + requests_for(emulator, 3)
    batch = client.batch(items, on_progress=lambda p: snapshots.append(attrs.evolve(p)))
    async with batch:
        results = [r async for r in batch]
    assert all(r.ok for r in results)
    assert max(s.running for s in snapshots) == 2  # never more than the 2 slots allow
    assert batch.progress == BatchProgress(read=5, submitted=5, running=0, done=5, failed=0)
    assert "in_use=0 running=0 held=0" in repr(in_flight)


@pytest.mark.emulator(
    status_limit=WindowLimit(1, 10.0),
    faults=[HttpFault("slow", route="status", delay=1.5, times=1)],
)
@pytest.mark.client(limits=Limits(status=Rate(1, 10.0), margin=0.0, status_burst=None), timeout=1.0)
async def test_a_status_call_that_got_no_answer_is_counted_later(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A server slow to act counts a call when it acts: here 1.5 s after it came, past the
    client's 1 s timeout. The grant is booked as long again as it was out (to 2 s), so the
    retry waits for the server's window; booked when given up (1 s), it drew a 429."""
    pid = (await client.submit(requests_for(emulator, 1)[0])).id
    loop = asyncio.get_running_loop()
    start = loop.time()
    prediction = await client.status(pid)
    report = emulator.report()
    assert prediction.id == pid
    assert report.requests_by_route["status"] == 2  # the one given up on, and the retry
    assert report.rejected == {}
    assert loop.time() - start >= 12.0  # the retry waited for the late booking


@pytest.mark.emulator(
    submit_limit=WindowLimit(1, 60.0),
    faults=[HttpFault("slow", route="run", delay=1.5, times=1)],
)
@pytest.mark.client(limits=Limits(submit=Rate(1, 60.0), margin=0.0), timeout=1.0)
async def test_a_submission_that_got_no_answer_is_counted_later(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """The same on POST /v1/run: the server creates the prediction when it acts, 1.5 s
    after the POST came and past the client's 1 s timeout; the next submission waits for
    the server's window (booked when given up, it drew a 429)."""
    first, second = requests_for(emulator, 2)
    given_up = asyncio.create_task(client.submit(first))
    await asyncio.sleep(0.1)  # (the first has its grant)
    await client.submit(second)  # waits for the window, behind the first
    with pytest.raises(errors.SubmissionUncertainError):
        await given_up  # (after the hold: as long as it would likely have run)
    report = emulator.report()
    assert report.rejected == {}
    assert [round(a.time, 1) for a in report.accepted] == [1.5, 62.0]


@pytest.mark.emulator(
    submit_limit=WindowLimit(1, 60.0),
    faults=[HttpFault("slow", route="run", delay=10.0, times=1)],
)
@pytest.mark.client(limits=Limits(submit=Rate(1, 60.0), margin=0.0), timeout=30.0)
async def test_a_submission_answered_after_its_caller_was_cancelled_is_booked_answered(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A POST let finish past its caller's cancel (so that what it created can be
    cancelled by id) got its answer: the server counted it by then, so the window dates it
    at the answer (10 s), not as a request with no answer (as long again: 20 s), and the
    next submission goes out a window after the answer."""
    first, second = requests_for(emulator, 2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.submit(first), 2.0)  # (returns once answered)
    await client.submit(second)
    report = emulator.report()
    assert report.rejected == {}
    assert [round(a.time, 1) for a in report.accepted] == [10.0, 70.0]
    assert report.requests_by_route.get("cancel") == 1  # the first, cancelled by its id
