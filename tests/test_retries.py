"""Retries only where safe: GETs retry; POST /v1/run is re-sent only if nothing can exist."""

from __future__ import annotations

import asyncio

import pytest
from helpers import assert_uncertain_slot_held_then_given_back, free_port

from fashn_async import AsyncFashn, Limits, Rate, RetryPolicy, TryOnRequest, errors
from fashn_async.testing import Emulator, HttpFault


def request_for(emulator: Emulator) -> TryOnRequest:
    """A valid try-on of the emulator's own sample images."""
    return TryOnRequest(
        model_image=emulator.sample_image_url("model"),
        garment_image=emulator.sample_image_url("garment"),
        category="tops",
    )


async def test_post_5xx_is_resent(client: AsyncFashn, emulator: Emulator) -> None:
    """A 5xx answer to POST means no prediction: it is re-sent and succeeds, once."""
    emulator.inject(HttpFault(kind="error_5xx", route="run", times=2, status=503))
    result = await client.run(request_for(emulator))
    report = emulator.report()
    assert [s.id for s in report.accepted] == [result.id]
    assert report.errors_5xx == 2
    assert report.duplicates == 0


async def test_post_5xx_gives_up(emulator: Emulator) -> None:
    """After the policy's attempts a persistent 5xx is raised as ServerError."""
    emulator.inject(HttpFault(kind="error_5xx", route="run"))
    async with AsyncFashn(
        api_key=emulator.api_key, base_url=emulator.url, retry=RetryPolicy(attempts=3)
    ) as client:
        with pytest.raises(errors.ServerError) as info:
            await client.run(request_for(emulator))
    assert info.value.status_code == 500
    assert emulator.report().errors_5xx == 3


@pytest.mark.parametrize("kind", ["drop_after", "drop_before"])
async def test_post_dropped_is_uncertain(client: AsyncFashn, emulator: Emulator, kind: str) -> None:
    """A POST that went out and got no answer is never re-sent: SubmissionUncertainError."""
    emulator.inject(HttpFault(kind=kind, route="run", times=1))  # type: ignore[arg-type]
    with pytest.raises(errors.SubmissionUncertainError) as info:
        await client.submit(request_for(emulator))
    assert info.value.name == "SubmissionUncertain"
    report = emulator.report()
    assert len(report.accepted) == (1 if kind == "drop_after" else 0)
    assert report.duplicates == 0
    await assert_uncertain_slot_held_then_given_back(client)


@pytest.mark.client(timeout=5.0)
async def test_post_timeout_is_uncertain(client: AsyncFashn, emulator: Emulator) -> None:
    """A POST that times out may have landed: SubmissionUncertainError, not re-sent."""
    emulator.inject(HttpFault(kind="slow", route="run", delay=30.0, times=1))
    with pytest.raises(errors.SubmissionUncertainError):
        await client.submit(request_for(emulator))
    await asyncio.sleep(30)
    assert len(emulator.report().accepted) <= 1


async def test_connect_error_is_retried_then_raised() -> None:
    """No connection at all: the request never left, so even a POST is retried, then raised."""
    async with AsyncFashn(
        api_key="test-key-0123",
        base_url=f"http://127.0.0.1:{free_port()}",
        retry=RetryPolicy(attempts=3),
    ) as client:
        with pytest.raises(errors.ConnectError):
            await client.submit(
                model_image="http://127.0.0.1:1/a.png",
                garment_image="http://127.0.0.1:1/b.png",
                category="tops",
            )
        with pytest.raises(errors.ConnectError):
            await client.status("x")


@pytest.mark.parametrize("kind", ["error_5xx", "drop_before", "drop_after"])
async def test_get_retries(client: AsyncFashn, emulator: Emulator, kind: str) -> None:
    """Status GETs retry 5xx and dropped connections, then succeed."""
    prediction = await client.submit(request_for(emulator))
    emulator.inject(HttpFault(kind=kind, route="status", times=2))  # type: ignore[arg-type]
    status = await client.status(prediction.id)
    assert status.id == prediction.id


@pytest.mark.client(timeout=2.0, retry=RetryPolicy(attempts=2))
async def test_get_timeout(client: AsyncFashn, emulator: Emulator) -> None:
    """A status call that never answers ends as NetworkTimeoutError after retries."""
    prediction = await client.submit(request_for(emulator))
    emulator.inject(HttpFault(kind="slow", route="status", delay=10.0))
    with pytest.raises(errors.NetworkTimeoutError):
        await client.status(prediction.id)


@pytest.mark.emulator(status_limit=None)
async def test_get_honours_retry_after_on_429(emulator: Emulator) -> None:
    """A 429 on status pauses the budget for Retry-After, then the call succeeds."""
    async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
        prediction = await client.submit(request_for(emulator))
    # A stricter emulator than the client's budget: 2 per 10 s.
    from fashn_async.testing import EmulatorConfig, WindowLimit

    async with Emulator(EmulatorConfig(status_limit=WindowLimit(2, 10.0))) as strict:
        async with AsyncFashn(
            api_key=strict.api_key, base_url=strict.url, limits=Limits(status=Rate(10, 10.0))
        ) as client:
            prediction = await client.submit(request_for(strict))
            loop = asyncio.get_running_loop()
            start = loop.time()
            for _ in range(3):
                await client.status(prediction.id)
            assert loop.time() - start >= 9.9
            assert strict.report().rejected.get("RateLimitExceeded", 0) >= 1


@pytest.mark.emulator(submit_limit=None)
async def test_submit_429_pauses_and_resends(emulator: Emulator) -> None:
    """A RateLimitExceeded on POST pauses the submit limiter, then the same body is re-sent."""
    from fashn_async.testing import EmulatorConfig, WindowLimit

    async with Emulator(
        EmulatorConfig(submit_limit=WindowLimit(2, 60.0), in_flight_limit=None)
    ) as strict:
        async with AsyncFashn(
            api_key=strict.api_key, base_url=strict.url, limits=Limits(submit=Rate(10, 60.0))
        ) as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            ids = [(await client.submit(request_for(strict))).id for _ in range(3)]
            assert loop.time() - start >= 59.9
        report = strict.report()
        assert [s.id for s in report.accepted] == ids
        assert report.rejected.get("RateLimitExceeded", 0) >= 1
        assert report.max_submissions_in_window <= 2


@pytest.mark.emulator(in_flight_limit=2)
@pytest.mark.client(limits=Limits(in_flight=None))
async def test_concurrency_limit_waits_for_a_slot(client: AsyncFashn, emulator: Emulator) -> None:
    """ConcurrencyLimitExceeded means wait and re-send: every run completes, none twice."""
    results = await asyncio.gather(*(client.run(request_for(emulator)) for _ in range(5)))
    report = emulator.report()
    assert len({r.id for r in results}) == 5
    assert len(report.accepted) == 5
    assert report.rejected.get("ConcurrencyLimitExceeded", 0) >= 1
    assert report.max_in_progress <= 2
