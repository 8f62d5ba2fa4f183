"""The strict rolling-window limiter and the in-flight slots, on fast-forwarded loop time."""

from __future__ import annotations

import asyncio
import math
import random

import aiolimiter
import pytest

from fashn_async import Limits, Rate
from fashn_async._limits import Slots, WindowLimiter


async def take(limiter: WindowLimiter, amount: int = 1, *, priority: float = 0.0) -> None:
    """Acquire and answer at once, as a request with no network delay."""
    grant = await limiter.acquire(amount, priority=priority)
    limiter.settle(grant, counted=True)


def max_in_any_window(events: list[tuple[float, int]], window: float) -> int:
    """Most units in any half-open window [t, t + window) of the recorded grants."""
    events = sorted(events)
    best = 0
    for i, (start, _) in enumerate(events):
        total = sum(w for t, w in events[i:] if t < start + window - 1e-9)
        best = max(best, total)
    return best


async def test_first_r_at_once_next_r_one_window_later() -> None:
    """R grants go at once; the next R go exactly one window later, not earlier."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(25, 60.0))
    start = loop.time()
    times: list[float] = []

    async def one() -> None:
        await take(limiter)
        times.append(loop.time() - start)

    await asyncio.gather(*(one() for _ in range(75)))
    assert times[:25] == [0.0] * 25
    assert times[25:50] == pytest.approx([60.0] * 25)
    assert times[50:] == pytest.approx([120.0] * 25)


async def test_margin_widens_the_window() -> None:
    """A margin delays the second window by exactly the margin."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(2, 10.0), margin=0.5)
    start = loop.time()
    for _ in range(3):
        await take(limiter)
    assert loop.time() - start == pytest.approx(10.5)


async def test_rolling_window_under_random_cancellation() -> None:
    """Hundreds of callers, some cancelled at random: never more than R in any window."""
    loop = asyncio.get_running_loop()
    rng = random.Random(7)
    limiter = WindowLimiter(Rate(10, 5.0))
    granted: list[tuple[float, int]] = []

    async def caller(delay: float, amount: int) -> None:
        await asyncio.sleep(delay)
        await take(limiter, amount)
        granted.append((loop.time(), amount))

    tasks = [
        asyncio.ensure_future(caller(rng.uniform(0, 30), rng.choice([1, 1, 1, 2, 4])))
        for _ in range(300)
    ]
    for task in rng.sample(tasks, 80):
        loop.call_later(rng.uniform(0, 60), task.cancel)
    await asyncio.gather(*tasks, return_exceptions=True)
    assert granted, "nothing was granted"
    assert max_in_any_window(granted, 5.0) <= 10
    done = sum(1 for t in tasks if not t.cancelled())
    assert len(granted) == done


async def test_throughput_at_the_bound() -> None:
    """Under constant pressure the limiter admits exactly R per window, no less."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(25, 60.0))
    start = loop.time()
    for _ in range(251):
        await take(limiter)
    # 251 = 10 full windows + 1: the last grant is at exactly 10 windows.
    assert loop.time() - start == pytest.approx(600.0)


async def test_fifo_fairness() -> None:
    """Waiters are served in arrival order, whatever their amounts."""
    limiter = WindowLimiter(Rate(4, 1.0))
    order: list[int] = []
    await take(limiter, 4)

    async def waiter(i: int, amount: int) -> None:
        await take(limiter, amount)
        order.append(i)

    tasks = []
    for i, amount in enumerate([3, 1, 2, 4, 1, 1]):
        tasks.append(asyncio.ensure_future(waiter(i, amount)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, 5]


async def test_priority_goes_first() -> None:
    """A higher priority waiter is granted before earlier, lower-priority ones."""
    limiter = WindowLimiter(Rate(1, 1.0))
    order: list[str] = []
    await take(limiter)

    async def waiter(name: str, priority: float) -> None:
        await take(limiter, priority=priority)
        order.append(name)

    low = asyncio.ensure_future(waiter("low", 0.1))
    await asyncio.sleep(0)
    high = asyncio.ensure_future(waiter("high", 0.9))
    await asyncio.gather(low, high)
    assert order == ["high", "low"]


async def test_cancelled_waiter_loses_no_capacity() -> None:
    """Cancelling a queued waiter lets the next one have its place at once."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(1, 10.0))
    await take(limiter)
    first = asyncio.ensure_future(take(limiter))
    await asyncio.sleep(1)
    first.cancel()
    start = loop.time()
    await take(limiter)
    assert loop.time() - start == pytest.approx(9.0)
    assert limiter.in_window() == 1


async def test_grant_cancelled_before_use_is_refunded() -> None:
    """A waiter granted capacity but cancelled before resuming gives it back."""
    limiter = WindowLimiter(Rate(1, 10.0))
    await take(limiter)
    waiter = asyncio.ensure_future(take(limiter))
    await asyncio.sleep(10)  # granted at t=10 ...
    waiter.cancel()  # ... and cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.in_window() == 0


async def test_pause_holds_every_waiter() -> None:
    """pause() stops all grants until it ends, even with capacity free."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(10, 1.0))
    limiter.pause(30.0)
    start = loop.time()
    await asyncio.gather(*(take(limiter) for _ in range(3)))
    assert loop.time() - start == pytest.approx(30.0)


async def test_amount_over_limit_is_refused() -> None:
    """Asking for more than the whole limit fails instead of waiting forever."""
    limiter = WindowLimiter(Rate(4, 1.0))
    with pytest.raises(ValueError, match="amount"):
        await take(limiter, 5)


async def test_window_counts_from_the_answer() -> None:
    """A slow request's window starts when it was answered: the server dated it later."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(2, 10.0))
    start = loop.time()
    first = await limiter.acquire()
    second = await limiter.acquire()
    third = asyncio.ensure_future(take(limiter))
    await asyncio.sleep(4.0)  # the two requests are on the wire for 4 s
    assert limiter.in_window() == 2
    limiter.settle(first, counted=True)
    await asyncio.sleep(3.0)
    limiter.settle(second, counted=True)
    await third
    assert loop.time() - start == pytest.approx(14.0)  # first answer + window


async def test_an_unanswered_grant_never_expires() -> None:
    """Until answered, a grant counts as now: a request hung for 2 windows still counts."""
    limiter = WindowLimiter(Rate(1, 10.0))
    grant = await limiter.acquire()
    waiter = asyncio.ensure_future(take(limiter))
    await asyncio.sleep(25.0)
    assert not waiter.done()
    limiter.settle(grant, counted=True)
    await asyncio.sleep(9.9)
    assert not waiter.done()
    await asyncio.sleep(0.2)
    assert waiter.done()


async def test_uncounted_grant_comes_back_at_once() -> None:
    """settle(counted=False) (never sent, or refused uncounted) frees the capacity now."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(1, 10.0))
    grant = await limiter.acquire()
    waiter = asyncio.ensure_future(take(limiter))
    await asyncio.sleep(1.0)
    start = loop.time()
    limiter.settle(grant, counted=False)
    limiter.settle(grant, counted=True)  # a second settle of the same grant is ignored
    await waiter
    assert loop.time() == pytest.approx(start)
    assert limiter.in_window() == 1


async def test_burst_then_paced() -> None:
    """With a burst, `burst` grants go at once, then one every period/limit seconds, and
    the window still holds."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(50, 10.0), burst=10)
    start = loop.time()
    times: list[float] = []
    for _ in range(30):
        await take(limiter)
        times.append(loop.time() - start)
    assert times[:10] == [0.0] * 10
    assert times[10:] == pytest.approx([0.2 * i for i in range(1, 21)], abs=1e-4)
    assert max_in_any_window([(t, 1) for t in times], 10.0) <= 50


async def test_aiolimiter_alone_breaks_the_rolling_window() -> None:
    """The reason for WindowLimiter: AsyncLimiter(25, 60) admits 49 in one 60 s window."""
    loop = asyncio.get_running_loop()
    limiter = aiolimiter.AsyncLimiter(25, 60)
    granted: list[tuple[float, int]] = []
    start = loop.time()
    while loop.time() - start < 59:
        async with limiter:
            granted.append((loop.time(), 1))
    assert max_in_any_window(granted, 60.0) >= 49


async def test_slots_cap_and_fifo() -> None:
    """Slots admit at most `capacity` holders, in arrival order."""
    slots = Slots(2)
    order: list[int] = []
    peak = 0

    async def holder(i: int) -> None:
        nonlocal peak
        await slots.acquire()
        peak = max(peak, slots.in_use)
        order.append(i)
        await asyncio.sleep(1)
        slots.release()

    await asyncio.gather(*(holder(i) for i in range(6)))
    assert peak == 2
    assert order == list(range(6))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_flight": 0}, "in_flight"),
        ({"in_flight": True}, "in_flight"),
        ({"margin": -1}, "margin"),
    ],
)
def test_limits_validation(kwargs: dict[str, object], match: str) -> None:
    """Bad limits fail at construction with the field named."""
    with pytest.raises(ValueError, match=match):
        Limits(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("limit", "period"), [(0, 1.0), (1, 0), (1.5, 1.0), (1, -2)])
def test_rate_validation(limit: object, period: object) -> None:
    """A Rate needs a positive integer limit and a positive period."""
    with pytest.raises(ValueError, match="limit|period"):
        Rate(limit, period)  # type: ignore[arg-type]


async def test_a_seeded_history_holds_back_new_grants() -> None:
    """Seeded (age, amount) grants count as made `age` seconds ago; older ones not at all."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(3, 10.0))
    limiter.seed([(4.0, 2), (9.0, 1), (10.0, 5), (12.0, 1)])  # the last two left the window
    start = loop.time()
    assert limiter.in_window() == 3
    await take(limiter)  # the one sent 9 s ago leaves the window 1 s from now
    assert loop.time() - start == pytest.approx(1.0)
    await take(limiter)  # then the two sent 4 s ago, 6 s from now
    assert loop.time() - start == pytest.approx(6.0)
    assert limiter.in_window() == 2


async def test_a_grant_seeded_ahead_counts_until_a_window_after_that() -> None:
    """A negative age (a send the server may count that much later still) holds the
    window until a whole window after that time."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(1, 10.0))
    limiter.seed([(-5.0, 1)])
    start = loop.time()
    assert limiter.in_window() == 1
    await take(limiter)
    assert loop.time() - start == pytest.approx(15.0)


async def test_seeding_wakes_no_one_early_and_holds_a_waiter_back() -> None:
    """A history seeded while a caller waits makes it wait for that history too."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(1, 10.0))
    await take(limiter)
    waiter = asyncio.ensure_future(take(limiter))
    await asyncio.sleep(5.0)
    limiter.seed([(0.0, 1)])  # a send the limiter did not know of, just now
    await waiter
    assert loop.time() == pytest.approx(15.0)


async def test_a_waiter_past_its_deadline_goes_ahead_of_every_finite_priority() -> None:
    """A low priority waits while higher ones keep coming, but not past its deadline: then
    it goes next, behind only an infinite priority (a person's call); two past theirs go in
    order of deadline; one with no deadline waits for the stream to end."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(1, 1.0))
    start = loop.time()
    granted: dict[str, float] = {}

    async def waiter(name: str, priority: float, deadline: float | None = None) -> None:
        at = None if deadline is None else start + deadline
        grant = await limiter.acquire(priority=priority, deadline=at)
        limiter.settle(grant, counted=True)
        granted[name] = loop.time() - start

    async def stream() -> None:  # a busier caller: a likelier waiter every 0.5 s, for 20 s
        tasks = []
        for k in range(40):
            tasks.append(asyncio.ensure_future(waiter(f"high{k}", 0.9)))
            await asyncio.sleep(0.5)
        await asyncio.gather(*tasks)

    async def person() -> None:
        await asyncio.sleep(3.6)
        await waiter("person", math.inf)

    await take(limiter)  # (the window is full: everyone queues)
    await asyncio.gather(
        stream(),
        waiter("low", 0.1, deadline=3.5),
        waiter("later", 0.2, deadline=5.5),
        waiter("none", 0.3),
        person(),
    )
    assert 3.5 <= granted["low"] <= 3.5 + 2.0
    assert granted["person"] < granted["low"]
    assert granted["low"] < granted["later"] <= 5.5 + 1.0
    assert granted["none"] > max(t for name, t in granted.items() if name.startswith("high"))


async def test_a_nan_priority_is_read_as_zero() -> None:
    """A priority that is NaN orders as 0: below a positive one, above a negative one (a
    NaN key held no order, and the queue's waiters hung)."""
    limiter = WindowLimiter(Rate(1, 1.0))
    order: list[str] = []

    async def waiter(name: str, priority: float) -> None:
        grant = await limiter.acquire(priority=priority)
        limiter.settle(grant, counted=True)
        order.append(name)

    await take(limiter)  # (a grant a second from 1 s on)
    await asyncio.wait_for(
        asyncio.gather(waiter("positive", 0.5), waiter("nan", math.nan), waiter("negative", -1.0)),
        30.0,
    )
    assert order == ["positive", "nan", "negative"]


async def test_a_deadline_already_past_goes_first_at_once() -> None:
    """A waiter whose deadline has passed when it joins is served before waiting higher
    priorities; a cancelled one leaves no timer behind."""
    loop = asyncio.get_running_loop()
    limiter = WindowLimiter(Rate(1, 1.0))
    await take(limiter)
    order: list[str] = []

    async def waiter(name: str, priority: float, deadline: float | None) -> None:
        grant = await limiter.acquire(priority=priority, deadline=deadline)
        limiter.settle(grant, counted=True)
        order.append(name)

    high = asyncio.ensure_future(waiter("high", 0.9, None))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(waiter("gone", 0.5, loop.time() + 0.2))
    await asyncio.sleep(0)
    gone.cancel()
    late = asyncio.ensure_future(waiter("late", 0.1, loop.time() - 1.0))
    await asyncio.gather(high, late)
    assert order == ["late", "high"]
    assert limiter.waiting == 0
