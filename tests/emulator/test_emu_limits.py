"""Rate windows, the in-flight cap and the credit budget, to the exact loop second."""

from __future__ import annotations

import asyncio

import pytest
from emu_support import Api, flat_body, now, running
from hypothesis import given
from hypothesis import strategies as st

from fashn_async.testing import PredictionFault, WindowLimit
from fashn_async.testing._limits import RollingWindow, format_retry_after, max_in_window

NO_CAP = {"in_flight_limit": None}


async def _sleep_until(when: float) -> None:
    await asyncio.sleep(max(when - now(), 0.0))


async def _submit_many(api: Api, count: int, **fields: object) -> None:
    for _ in range(count):
        await api.submit(flat_body(**fields))


async def test_submit_window_rolls_exactly() -> None:
    """25 generations at t=0 refuse the 26th until exactly t=60, with Retry-After."""
    async with running(**NO_CAP) as api:
        start = now()
        await _submit_many(api, 25)
        refused = await api.run(flat_body())
        assert refused.status == 429
        assert refused.json == {"error": "RateLimitExceeded", "message": refused.json["message"]}
        assert refused.headers["Retry-After"] == "60"
        await _sleep_until(start + 59.5)
        late = await api.run(flat_body())
        assert (late.status, late.headers["Retry-After"]) == (429, "0.5")
        await _sleep_until(start + 60)
        assert (await api.run(flat_body())).status == 200
        report = api.emu.report()
        assert report.max_submissions_in_window == 25
        assert report.rejected == {"RateLimitExceeded": 2}
        assert report.rejected_by_route == {"run": 2}
        assert len(report.accepted) == 26


async def test_window_is_rolling_not_per_minute() -> None:
    """A burst at t=50 still refuses at t=61, past a calendar-minute boundary."""
    async with running(**NO_CAP) as api:
        start = now()
        await _sleep_until(start + 50)
        await _submit_many(api, 25)
        await _sleep_until(start + 61)
        refused = await api.run(flat_body())
        assert (refused.status, refused.headers["Retry-After"]) == (429, "49")
        await _sleep_until(start + 109.99)
        assert (await api.run(flat_body())).status == 429
        await _sleep_until(start + 110)
        assert (await api.run(flat_body())).status == 200
        assert api.emu.report().max_submissions_in_window == 25


async def test_window_frees_as_old_events_expire() -> None:
    """10 at t=0 and 15 at t=30 leave room for exactly 10 at t=60, then wait for t=90."""
    async with running(**NO_CAP) as api:
        start = now()
        await _submit_many(api, 10)
        await _sleep_until(start + 30)
        await _submit_many(api, 15)
        await _sleep_until(start + 59)
        assert (await api.run(flat_body())).status == 429
        await _sleep_until(start + 60)
        await _submit_many(api, 10)
        refused = await api.run(flat_body())
        assert (refused.status, refused.headers["Retry-After"]) == (429, "30")
        assert api.emu.report().max_submissions_in_window == 25


async def test_num_samples_count_as_generations() -> None:
    """Each num_samples counts toward the submit window: 6x4 leaves room for one more."""
    async with running(**NO_CAP) as api:
        await _submit_many(api, 6, num_samples=4)
        assert (await api.run(flat_body(num_samples=2))).status == 429
        assert (await api.run(flat_body(num_samples=1))).status == 200
        assert (await api.run(flat_body(num_samples=1))).status == 429
        report = api.emu.report()
        assert report.max_submissions_in_window == 25
        assert [entry.generations for entry in report.accepted] == [4] * 6 + [1]


async def test_retry_after_can_be_turned_off() -> None:
    """With retry_after=False a 429 carries no Retry-After header."""
    async with running(retry_after=False, submit_limit=WindowLimit(1, 60.0)) as api:
        await api.submit()
        refused = await api.run(flat_body())
        assert refused.status == 429
        assert "Retry-After" not in refused.headers


async def test_time_scale_shrinks_windows_and_retry_after() -> None:
    """time_scale=0.01 runs a 60 s window in 0.6 loop seconds, Retry-After as a decimal."""
    async with running(time_scale=0.01, **NO_CAP) as api:
        start = now()
        await _submit_many(api, 25)
        refused = await api.run(flat_body())
        assert refused.headers["Retry-After"] == "0.6"
        await _sleep_until(start + 0.59)
        assert (await api.run(flat_body())).status == 429
        await _sleep_until(start + 0.6)
        pid = await api.submit()
        final = await api.until_terminal(pid, every=0.01)
        assert final["status"] == "completed"
        report = api.emu.report()
        assert report.accepted[-1].time == pytest.approx(60.0)
        assert 5.0 <= report.terminal_at[pid] - report.accepted[-1].time <= 11.0


async def test_status_window() -> None:
    """51 status calls within 10 s are refused with 429 RateLimitExceeded until it rolls."""
    async with running() as api:
        start = now()
        pid = await api.submit()
        for index in range(50):
            reply = await api.status(pid if index % 2 else "unknown")
            assert reply.status in (200, 404)
        refused = await api.status(pid)
        assert refused.status == 429
        assert refused.json["error"] == "RateLimitExceeded"
        assert refused.headers["Retry-After"] == "10"
        await _sleep_until(start + 10)
        assert (await api.status(pid)).status == 200
        report = api.emu.report()
        assert report.status_calls_total == 51
        assert report.status_calls == {pid: 26}
        assert report.max_status_in_window == 50
        assert report.rejected_by_route == {"status": 1}


async def test_credits_window() -> None:
    """The 31st credits check within 10 s is refused until the window rolls."""
    async with running() as api:
        start = now()
        for _ in range(30):
            assert (await api.request("GET", "/v1/credits")).status == 200
        refused = await api.request("GET", "/v1/credits")
        assert (refused.status, refused.json["error"]) == (429, "RateLimitExceeded")
        assert refused.headers["Retry-After"] == "10"
        await _sleep_until(start + 10)
        assert (await api.request("GET", "/v1/credits")).status == 200
        assert api.emu.report().rejected_by_route == {"credits": 1}


async def test_limits_can_be_turned_off() -> None:
    """With every limit None, bursts beyond the defaults are all admitted."""
    async with running(submit_limit=None, status_limit=None, credits_limit=None, **NO_CAP) as api:
        await _submit_many(api, 40)
        for _ in range(60):
            assert (await api.request("GET", "/v1/credits")).status == 200
        assert api.emu.report().max_submissions_in_window == 40


async def test_in_flight_cap() -> None:
    """A 7th prediction in progress is refused with ConcurrencyLimitExceeded until one ends."""
    async with running(latency=(10.0, 10.0)) as api:
        start = now()
        await _submit_many(api, 6)
        await _sleep_until(start + 4)
        refused = await api.run(flat_body())
        assert refused.status == 429
        assert refused.json["error"] == "ConcurrencyLimitExceeded"
        assert refused.headers["Retry-After"] == "6"
        await _sleep_until(start + 10)
        assert (await api.run(flat_body())).status == 200
        report = api.emu.report()
        assert report.max_in_progress == 6
        assert report.rejected == {"ConcurrencyLimitExceeded": 1}


async def test_cancel_frees_an_in_flight_slot() -> None:
    """Canceling a running prediction frees its slot at once."""
    async with running(latency=(10.0, 10.0), in_flight_limit=1) as api:
        pid = await api.submit()
        assert (await api.run(flat_body())).status == 429
        await api.request("GET", f"/v1/cancel/{pid}")
        assert (await api.run(flat_body())).status == 200


async def test_credit_budget() -> None:
    """Submissions beyond the credit budget are refused with OutOfCredits, no Retry-After."""
    async with running(credits=5) as api:
        await api.submit(flat_body(num_samples=2))
        refused = await api.run(flat_body(num_samples=4))
        assert refused.status == 429
        assert refused.json["error"] == "OutOfCredits"
        assert "Retry-After" not in refused.headers
        await api.submit(flat_body(num_samples=3))
        assert (await api.run(flat_body())).json["error"] == "OutOfCredits"
        credits = await api.request("GET", "/v1/credits")
        assert credits.json["credits"]["total"] == 0
        await asyncio.sleep(20)
        assert api.emu.report().credits_used == 5


async def test_failed_predictions_are_not_charged() -> None:
    """Failed predictions (faults, unreadable images) give their credits back."""
    async with running(credits=2, faults=(PredictionFault("PoseError", match="#pose"),)) as api:
        failing = await api.submit(flat_body(num_samples=2, model_image="http://127.0.0.1:1/#pose"))
        assert (await api.until_terminal(failing))["status"] == "failed"
        unreadable = "data:image/png;base64,aGVsbG8="
        broken = await api.submit(flat_body(num_samples=2, garment_image=unreadable))
        assert (await api.until_terminal(broken))["error"]["name"] == "ImageLoadError"
        credits = await api.request("GET", "/v1/credits")
        assert credits.json["credits"]["total"] == 2
        await api.submit(flat_body(num_samples=2))
        assert api.emu.report().credits_used == 0


# -- the window arithmetic on its own -----------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        (60.0, "60"),
        (59.00001, "60"),
        (59.0000001, "59"),
        (1.0, "1"),
        (1.2, "2"),
        (0.999, "1"),
        (0.5, "0.5"),
        (0.35, "0.35"),
        (0.341, "0.35"),
        (0.001, "0.01"),
        (0.0, "0.01"),
        (60.0000000001, "60"),
    ],
)
def test_format_retry_after(seconds: float, header: str) -> None:
    """Retry-After is whole seconds from 1 s, else hundredths, always rounded up."""
    assert format_retry_after(seconds) == header


EVENTS = st.lists(
    st.tuples(st.integers(0, 400).map(lambda t: t / 4), st.integers(1, 4)), max_size=40
)


@given(EVENTS, st.sampled_from([1.0, 2.5, 10.0, 60.0]))
def test_max_in_window_matches_brute_force(events: list[tuple[float, int]], period: float) -> None:
    """max_in_window equals the best half-open window found by brute force."""
    brute = max(
        (sum(w for t, w in events if end - period < t <= end) for end, _ in events), default=0
    )
    assert max_in_window(events, period) == brute


@given(
    st.lists(st.tuples(st.integers(0, 40).map(lambda t: t / 4), st.integers(1, 4)), max_size=40),
    st.integers(4, 12),
)
def test_rolling_window_never_exceeds_and_waits_exactly(
    steps: list[tuple[float, int]], limit: int
) -> None:
    """A window admits at most its limit in any period and names the exact wait."""
    period = 10.0
    window = RollingWindow(limit, period)
    clock = 0.0
    for step, weight in steps:
        clock += step
        wait = window.wait(clock, weight)

        def fits(at: float, weight: int = weight) -> bool:
            used = sum(w for t, w in window.history if at - t < period)
            return used + weight <= limit

        if wait == 0.0:
            assert fits(clock)
            window.add(clock, weight)
        else:
            assert not fits(clock)
            assert fits(clock + wait)
            assert not fits(clock + wait - 0.001)
    assert window.max_in_window() <= limit
