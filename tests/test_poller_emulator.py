"""The polling loop itself (fashn_async._poller), driven over HTTP against the emulator.

Loop time is fast-forwarded (looptime), so minutes of latency cost no real time. The
emulator draws latency per model and mode, so one client meets several latency classes.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import statistics
from collections.abc import Callable

import pytest

from fashn_async import AsyncFashn, Limits, ModelRequest, Polling, TryOnRequest, _poller
from fashn_async._limits import Rate, WindowLimiter
from fashn_async._models import PredictionStatus
from fashn_async._poller import Poller
from fashn_async._polling import latency_class
from fashn_async._turnbull import EPSILON
from fashn_async.testing import Emulator, EmulatorConfig, Latency
from fashn_async.testing._config import latency_for


def tryons(emulator: Emulator, n: int) -> list[TryOnRequest]:
    """n valid flat v1 try-ons of the emulator's samples."""
    return [
        TryOnRequest(
            model_image=emulator.sample_image_url("model"),
            garment_image=emulator.sample_image_url("garment"),
            category="tops",
            seed=i,
        )
        for i in range(n)
    ]


def model_request(emulator: Emulator, model_name: str, **inputs: object) -> ModelRequest:
    """A current-shape request of ``model_name`` on the emulator's samples."""
    return ModelRequest(
        model_name=model_name,
        inputs={
            "model_image": emulator.sample_image_url("model"),
            "garment_image": emulator.sample_image_url("garment"),
            **inputs,
        },
    )


def lags_in_order(emulator: Emulator) -> list[float]:
    """Detection lag of every ended prediction, in the order the server accepted them."""
    report = emulator.report()
    order = [a.id for a in sorted(report.accepted, key=lambda a: a.time)]
    return [
        report.first_seen_terminal[i] - report.terminal_at[i]
        for i in order
        if i in report.first_seen_terminal
    ]


def p95(values: list[float]) -> float:
    """The 95th percentile by nearest rank below."""
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


async def test_polling_cost_and_lag(client: AsyncFashn, emulator: Emulator) -> None:
    """5-11 s, 100 try-ons: calls <= 1.25 x a client knowing the range needs + 0.5, p95 lag
    after the 12th <= 1 s, and no 429."""
    client._engine.poller._rng = random.Random(5)  # a repeatable run
    results = [r async for r in client.batch(tryons(emulator, 100))]
    report = emulator.report()
    assert all(r.ok for r in results)
    calls = [report.status_calls[r.prediction_id] for r in results]  # type: ignore[index]
    latencies = [report.terminal_at[a.id] - a.time for a in report.accepted]
    need = statistics.mean(max(1, math.ceil(x - 5.0)) for x in latencies)
    assert statistics.mean(calls) <= 1.25 * need + 0.5
    assert p95(lags_in_order(emulator)[12:]) <= 1.0
    assert report.rejected == {}


@pytest.mark.emulator(
    latency={"tryon-v1.6": {"performance": (2.0, 4.0)}, "tryon-max": (20.0, 40.0)},
    submit_limit=None,
)
@pytest.mark.client(limits=Limits(submit=None))
async def test_each_latency_class_learns_its_own(client: AsyncFashn, emulator: Emulator) -> None:
    """tryon-v1.6 performance (2-4 s) and tryon-max (20-40 s) mixed in one client (6 in
    flight): two models, each learning its own range, neither teaching the other."""
    client._engine.poller._rng = random.Random(5)  # a repeatable run
    fast = model_request(emulator, "tryon-v1.6", mode="performance")
    slow = model_request(emulator, "tryon-max")
    for _ in range(3):  # three rounds of 12 of each, concurrently
        await asyncio.gather(*(client.run(r) for r in [fast] * 12 + [slow] * 12))
    poller = client._engine.poller
    fast_model = poller.models[latency_class(fast)]
    slow_model = poller.models[latency_class(slow)]
    assert fast_model.samples == slow_model.samples == 36
    # Each class has its own range: neither teaches the other. (The fast class's top is
    # blurred by status calls that waited for the shared budget: their intervals are wide.)
    assert 1.3 <= fast_model.quantile(EPSILON) <= 2.3
    assert 3.5 <= fast_model.quantile(1 - EPSILON) <= 10.0
    assert 17.5 <= slow_model.quantile(EPSILON) <= 21.0
    assert 38.0 <= slow_model.quantile(1 - EPSILON) <= 42.0
    report = emulator.report()
    by_class: dict[bool, list[float]] = {True: [], False: []}
    for accepted in sorted(report.accepted, key=lambda a: a.time):
        latency = report.terminal_at[accepted.id] - accepted.time
        lag = report.first_seen_terminal[accepted.id] - report.terminal_at[accepted.id]
        by_class[latency < 10.0].append(lag)
    # Six dense pollers ask 6.3 calls/s of a 5/s budget: a little over the 1 s goal.
    assert p95(by_class[True][12:]) <= 1.5
    assert p95(by_class[False][12:]) <= 1.5


async def test_poller_alone_over_http(client: AsyncFashn, emulator: Emulator) -> None:
    """A Poller built directly over the client's status call polls a submission to its end
    and learns one interval that holds the true latency."""
    loop = asyncio.get_running_loop()

    async def status(pid: str, priority: float, deadline: float | None) -> tuple[object, float]:
        sent = loop.time()
        return await client.status(pid), sent

    poller = Poller(Polling(), status, rng=random.Random(1))  # type: ignore[arg-type]
    prediction = await client.submit(tryons(emulator, 1)[0])
    submitted = loop.time()
    status = await poller.wait(prediction.id, submitted, latency_class=("v1", "", 1))
    assert status.status == "completed"
    report = emulator.report()
    latency = report.terminal_at[prediction.id] - report.accepted[0].time
    assert report.first_seen_terminal[prediction.id] - report.terminal_at[prediction.id] <= 1.0
    model = poller.models[("v1", "", 1)]
    assert model.samples == 1
    assert 5.0 <= latency <= 11.0


async def test_pressure_follows_the_budget() -> None:
    """No budget: idle (pressure 0); 50 per 10 s with nobody polling: 0."""

    async def never(pid: str, priority: float, deadline: float | None) -> object:
        raise AssertionError("not called")

    assert Poller(Polling(), never).pressure() == 0.0  # type: ignore[arg-type]
    budget = WindowLimiter(Rate(50, 10.0))
    assert Poller(Polling(), never, budget=budget).pressure() == 0.0  # type: ignore[arg-type]


def test_emulator_latency_by_model_and_mode() -> None:
    """The documented defaults per model and mode; overrides merge; mixtures draw by weight."""
    config = EmulatorConfig(latency={"tryon-v1.6": {"performance": (5, 11)}})
    table = config.latency
    assert latency_for(table, "tryon-v1.6", "performance") == Latency(((5.0, 11.0, 1.0),))
    assert latency_for(table, "tryon-v1.6", "quality") == Latency(((12.0, 17.0, 1.0),))
    assert latency_for(table, "tryon-v1.6", None) == Latency(((5.0, 11.0, 1.0),))
    assert latency_for(table, "tryon-max", None) == Latency(((20.0, 120.0, 1.0),))
    assert latency_for(table, "tryon-v1", None) == Latency(((5.0, 11.0, 1.0),))
    everywhere = EmulatorConfig(latency=(1, 2)).latency
    assert latency_for(everywhere, "tryon-max", None) == Latency(((1.0, 2.0, 1.0),))
    mix = Latency(((3.0, 5.0, 1.0), (25.0, 30.0, 3.0)))
    rng = random.Random(0)
    draws = [mix.draw(rng) for _ in range(2000)]
    assert all(3.0 <= d <= 5.0 or 25.0 <= d <= 30.0 for d in draws)
    assert 0.7 <= sum(d > 20 for d in draws) / len(draws) <= 0.8


@pytest.mark.parametrize("latency", [(5, 1), (-1, 2), [(1, 2, 0)], "fast", [(1, 2, 3, 4)]])
def test_bad_emulator_latency(latency: object) -> None:
    """A latency that is no distribution fails at construction, naming latency."""
    with pytest.raises(ValueError, match="latency"):
        EmulatorConfig(latency=latency)


async def test_a_long_wait_is_planned_again_when_the_model_learns() -> None:
    """A first poll planned 40 s out is planned again part way: once the class learns that
    completions come at 10 s, the waiting prediction is polled near 10 s, not at 40 s."""
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    start = loop.time()

    async def status(
        pid: str, priority: float, deadline: float | None
    ) -> tuple[PredictionStatus, float]:
        calls.append(loop.time() - start)
        done = PredictionStatus(id=pid, status="completed", output=("http://x/y.png",))
        return done, loop.time()

    poller = Poller(Polling(prior=(40.0, 50.0), explore=0.0), status, rng=random.Random(1))
    model = poller.model(("v1", "", 1))
    waiting = asyncio.ensure_future(poller.wait("p", start, latency_class=("v1", "", 1)))
    await asyncio.sleep(5.0)
    for _ in range(30):  # meanwhile, others of the class finished at 9-10 s
        model.observe(9.0, 10.0)
    await waiting
    assert calls == [pytest.approx(calls[0])]
    assert 5.0 <= calls[0] <= 14.0  # re-planned within REPLAN spacings, not at ~41 s


@pytest.mark.emulator(latency=(30.0, 120.0), in_flight_limit=None, submit_limit=None)
@pytest.mark.client(limits=Limits(in_flight=12, submit=None))
async def test_no_pause_past_max_interval_while_the_status_budget_is_busy(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """12 in progress of 30-120 s: the budget (5 calls/s) goes first to the predictions
    likeliest done, but a prediction last seen running max_interval (10 s) ago goes ahead
    of them (1.2 calls/s would do for all 12): no two of its status calls, as the server
    saw them, more than 10 s apart, plus the time for the budget's next grant."""
    client._engine.poller._rng = random.Random(5)  # a repeatable run
    results = [r async for r in client.batch(tryons(emulator, 36))]
    assert all(r.ok for r in results)
    report = emulator.report()
    pauses = [
        b - a for times in report.status_call_times.values() for a, b in itertools.pairwise(times)
    ]
    assert max(pauses) <= 10.0 + 0.5
    assert report.rejected == {}


@pytest.mark.emulator(
    latency={"tryon-v1.6": {"performance": (2.0, 4.0)}, "tryon-max": (60.0, 120.0)},
    in_flight_limit=None,
    submit_limit=None,
)
@pytest.mark.client(limits=Limits(in_flight=None, submit=None))
async def test_a_first_poll_waits_out_no_busy_budget(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """2-4 s try-ons (6 at a time) beside 12 of 60-120 s, whose polls fill the budget: a
    first poll the model gives ~0 chance (an early one) goes ahead once it has waited
    max_interval (10 s) less a spacing past its plan, so no fast prediction is seen more
    than about 10 s late (it was 64 s, and 106 s beside 40 slow ones)."""
    client._engine.poller._rng = random.Random(5)  # a repeatable run
    fast = model_request(emulator, "tryon-v1.6", mode="performance")
    slow = model_request(emulator, "tryon-max")
    fast_slots, slow_slots = asyncio.Semaphore(6), asyncio.Semaphore(12)

    async def run(request: ModelRequest, slots: asyncio.Semaphore) -> None:
        async with slots:
            await client.run(request)

    await asyncio.gather(
        *(run(fast, fast_slots) for _ in range(60)), *(run(slow, slow_slots) for _ in range(24))
    )
    report = emulator.report()
    fast_lags = [
        report.first_seen_terminal[a.id] - report.terminal_at[a.id]
        for a in report.accepted
        if a.model_name == "tryon-v1.6"
    ]
    assert len(fast_lags) == 60
    assert max(fast_lags) <= 10.0 + 0.5
    assert report.rejected == {}


class BusyWorker:
    """Stands in for the worker thread while image preparation holds it: each job
    waits until :meth:`free`."""

    def __init__(self) -> None:
        self.freed = asyncio.Event()
        self.jobs = 0

    async def __call__(self, job: Callable[[], object]) -> object:
        self.jobs += 1
        await self.freed.wait()
        return job()

    def free(self) -> None:
        self.freed.set()


KEY = ("v1", "", 1)


async def test_polls_go_on_while_a_refit_waits_for_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refit due while the worker thread is busy (seconds of image preparation) holds
    up no poll: the prediction is polled on the fit before it, and the refit is applied
    once the worker is free. (Before, the poller waited for it: polls 2.5 s late.)"""
    worker = BusyWorker()
    monkeypatch.setattr(_poller, "in_worker", worker)
    loop = asyncio.get_running_loop()
    start = loop.time()
    calls: list[float] = []

    async def status(
        pid: str, priority: float, deadline: float | None
    ) -> tuple[PredictionStatus, float]:
        calls.append(loop.time() - start)
        done = loop.time() - start >= 20.0
        return PredictionStatus(id=pid, status="completed" if done else "processing"), loop.time()

    poller = Poller(Polling(prior=(5.0, 11.0), explore=0.0), status, rng=random.Random(1))
    model = poller.model(KEY)
    for _ in range(8):  # others of the class finished: a refit is due
        model.observe(8.0, 9.0)
    assert model.cdf(9.0) - model.cdf(8.0) < 0.25  # (not refit yet: the prior's)
    waiting = asyncio.ensure_future(poller.wait("p", start, latency_class=KEY))
    await asyncio.sleep(15.0)
    assert worker.jobs == 1
    assert not worker.freed.is_set()
    assert len(calls) >= 5  # polled through 5-11 s meanwhile, about once a spacing
    assert max(b - a for a, b in itertools.pairwise(calls)) <= 2 * Polling().target_lag
    worker.free()
    status_seen = await waiting
    assert status_seen.status == "completed"
    assert poller._refits == {}
    assert model.cdf(9.0) - model.cdf(8.0) > 0.5  # the refit was applied: (8, 9] x 8


async def test_a_refit_outlives_the_poller_that_started_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run cancelled while its refit waits for the worker loses nothing: the refit is
    applied when the worker is free (before, it was dropped, and the class stayed on its
    old fit until n // 8 more completions); closing the poller cancels one still waiting."""
    worker = BusyWorker()
    monkeypatch.setattr(_poller, "in_worker", worker)
    loop = asyncio.get_running_loop()

    async def status(
        pid: str, priority: float, deadline: float | None
    ) -> tuple[PredictionStatus, float]:
        return PredictionStatus(id=pid, status="processing"), loop.time()

    poller = Poller(Polling(prior=(5.0, 11.0), explore=0.0), status, rng=random.Random(1))
    model = poller.model(KEY)
    for _ in range(8):  # the class is slower than its prior: 29-30 s
        model.observe(29.0, 30.0)
    assert model.quantile(0.5) < 12.0  # (not refit yet)
    waiting = asyncio.ensure_future(poller.wait("p", loop.time(), latency_class=KEY))
    await asyncio.sleep(1.0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    worker.free()
    await asyncio.sleep(0.1)
    assert model.quantile(0.5) > 25.0  # applied, though its poller is gone
    assert model.refit_job() is None

    worker.freed.clear()
    for _ in range(8):
        model.observe(29.0, 30.0)
    again = asyncio.ensure_future(poller.wait("q", loop.time(), latency_class=KEY))
    await asyncio.sleep(1.0)
    again.cancel()
    with pytest.raises(asyncio.CancelledError):
        await again
    await poller.aclose()
    assert worker.jobs == 2
    assert poller._refits == {}


async def test_a_refit_cancelled_before_it_started_leaves_nothing_behind() -> None:
    """Closing the poller in the same turn as a refit starts (its task cancelled before
    its first step, so its own cleanup never runs) leaves no refit on the books: the
    class refits again when due, and no poller waits on a task that is already done
    (it spun on it until its poll was due)."""

    async def never(pid: str, priority: object, deadline: float | None) -> object:
        raise AssertionError("not called")

    poller = Poller(Polling(), never)  # type: ignore[arg-type]
    model = poller.model(KEY)
    for _ in range(8):
        model.observe(8.0, 9.0)
    started = poller._start_refit(model)
    assert started is not None
    await poller.aclose()
    assert started.cancelled()
    assert poller._refits == {}
    for _ in range(8):
        model.observe(8.0, 9.0)
    again = poller._start_refit(model)
    assert again is not None
    assert again is not started
    await again
    assert poller._refits == {}
