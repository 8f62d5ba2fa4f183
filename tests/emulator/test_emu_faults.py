"""Injected faults: failed predictions, 5xx answers, dropped connections, slow answers."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from emu_support import flat_body, now, running

from fashn_async._names import CURRENT_PREDICTION_ERRORS, V1_PREDICTION_ERRORS
from fashn_async.testing import HttpFault, PredictionFault

NAMES = [*V1_PREDICTION_ERRORS, *CURRENT_PREDICTION_ERRORS, "QuantumFluxError"]


@pytest.mark.parametrize("name", NAMES)
async def test_prediction_fault_fails_after_latency(name: str) -> None:
    """A PredictionFault ends the prediction failed with its name, once its latency is up."""
    fault = PredictionFault(name, message="It went wrong.")
    async with running(latency=(6.0, 6.0), faults=(fault,)) as api:
        start = now()
        pid = await api.submit()
        await asyncio.sleep(5.99)
        assert (await api.status(pid)).json["status"] == "processing"
        await asyncio.sleep(start + 6 - now())
        reply = await api.status(pid)
        assert reply.json == {
            "id": pid,
            "status": "failed",
            "error": {"name": name, "message": "It went wrong."},
        }
        assert "x-fashn-credits-used" not in reply.headers
        assert api.emu.report().terminal_at[pid] == pytest.approx(6.0)


async def test_prediction_fault_matches_image_substring() -> None:
    """A PredictionFault with match fails only submissions whose image values contain it."""
    async with running(faults=(PredictionFault("NSFWError", match="?bad"),)) as api:
        garment = api.emu.sample_image_url("garment")
        bad = await api.submit(flat_body(garment_image=garment + "?bad"))
        good = await api.submit(flat_body(garment_image=garment))
        assert (await api.until_terminal(bad))["error"]["name"] == "NSFWError"
        assert (await api.until_terminal(good))["status"] == "completed"


async def test_prediction_fault_probability_is_seeded() -> None:
    """A probabilistic fault fails the same submissions on every run with the same seed."""

    async def outcomes(seed: int) -> list[str]:
        fault = PredictionFault("PipelineError", probability=0.5)
        config = {"submit_limit": None, "in_flight_limit": None, "seed": seed}
        async with running(faults=(fault,), **config) as api:  # type: ignore[arg-type]
            ids = [await api.submit() for _ in range(16)]
            await asyncio.sleep(12)
            return [(await api.status(pid)).json["status"] for pid in ids]

    first = await outcomes(3)
    assert first == await outcomes(3)
    assert 0 < first.count("failed") < 16
    assert first != await outcomes(4)


async def test_inject_and_clear_at_runtime() -> None:
    """emu.inject adds a rule for later submissions; clear_faults removes every rule."""
    async with running() as api:
        api.emu.inject(PredictionFault("PoseError"))
        failing = await api.submit()
        api.emu.clear_faults()
        passing = await api.submit()
        assert (await api.until_terminal(failing))["error"]["name"] == "PoseError"
        assert (await api.until_terminal(passing))["status"] == "completed"


@pytest.mark.parametrize(
    ("route", "method", "path"),
    [
        ("run", "POST", "/v1/run"),
        ("status", "GET", "/v1/status/x"),
        ("cancel", "GET", "/v1/cancel/x"),
        ("credits", "GET", "/v1/credits"),
    ],
)
async def test_error_5xx_answers_internal_server_error(route: str, method: str, path: str) -> None:
    """error_5xx answers InternalServerError with its status on its route; nothing is made."""
    async with running() as api:
        api.emu.inject(HttpFault("error_5xx", route=route, status=503, times=1))  # type: ignore[arg-type]
        reply = await api.request(method, path, body=flat_body())
        assert reply.status == 503
        assert reply.json["error"] == "InternalServerError"
        assert reply.json["message"]
        report = api.emu.report()
        assert report.errors_5xx == 1
        assert report.accepted == []
        again = await api.request(method, path, body=flat_body())
        assert again.status < 500


async def test_fault_route_filter() -> None:
    """A fault on one route leaves the others alone."""
    async with running() as api:
        api.emu.inject(HttpFault("error_5xx", route="status"))
        pid = await api.submit()
        assert (await api.status(pid)).status == 500
        assert (await api.request("GET", "/v1/credits")).status == 200


async def test_times_limits_a_fault() -> None:
    """times=N disturbs the next N matching requests only."""
    async with running() as api:
        api.emu.inject(HttpFault("error_5xx", route="credits", times=2))
        statuses = [(await api.request("GET", "/v1/credits")).status for _ in range(4)]
        assert statuses == [500, 500, 200, 200]


async def test_http_fault_probability_is_seeded() -> None:
    """A probabilistic HTTP fault hits the same requests with the same seed."""

    async def pattern(seed: int) -> list[int]:
        async with running(seed=seed, credits_limit=None) as api:
            api.emu.inject(HttpFault("error_5xx", route="credits", probability=0.5))
            return [(await api.request("GET", "/v1/credits")).status for _ in range(20)]

    first = await pattern(1)
    assert first == await pattern(1)
    assert set(first) == {200, 500}


async def test_drop_before_creates_nothing() -> None:
    """drop_before closes the connection unanswered and no prediction exists."""
    async with running() as api:
        api.emu.inject(HttpFault("drop_before", route="run", times=1))
        with pytest.raises(aiohttp.ClientError):
            await api.run(flat_body())
        report = api.emu.report()
        assert report.accepted == []
        assert report.dropped == 1
        assert (await api.run(flat_body())).status == 200


async def test_drop_before_on_get() -> None:
    """drop_before on a GET route leaves the client with no answer (aiohttp retries once)."""
    async with running() as api:
        api.emu.inject(HttpFault("drop_before", route="credits", times=2))
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.request("GET", "/v1/credits")
        assert api.emu.report().dropped == 2
        assert (await api.request("GET", "/v1/credits")).status == 200


async def test_drop_after_creates_the_prediction() -> None:
    """drop_after creates and counts the prediction, then closes the connection unanswered."""
    async with running(credits=5) as api:
        api.emu.inject(HttpFault("drop_after", route="run", times=1))
        with pytest.raises(aiohttp.ClientError):
            await api.run(flat_body(num_samples=2))
        report = api.emu.report()
        assert len(report.accepted) == 1
        assert report.max_submissions_in_window == 2
        pid = report.accepted[0].id
        assert (await api.until_terminal(pid))["status"] == "completed"
        credits = await api.request("GET", "/v1/credits")
        assert credits.json["credits"]["total"] == 3


async def test_slow_answers_after_the_delay() -> None:
    """slow holds the answer for delay API seconds (scaled), then answers normally."""
    async with running(time_scale=0.5) as api:
        api.emu.inject(HttpFault("slow", route="credits", delay=30.0, times=1))
        start = now()
        reply = await api.request("GET", "/v1/credits")
        assert reply.status == 200
        assert now() - start == pytest.approx(15.0)
        assert api.emu.report().faults == {"credits:slow": 1}  # (it shows in the report)
        start = now()
        await api.request("GET", "/v1/credits")
        assert now() - start == pytest.approx(0.0)


async def test_slow_run_creates_the_prediction_after_client_gives_up() -> None:
    """A client timing out on a slow submission still gets a prediction created (charged)."""
    async with running() as api:
        api.emu.inject(HttpFault("slow", route="run", delay=30.0, times=1))
        start = now()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await api.run(flat_body())
        assert api.emu.report().accepted == []
        await asyncio.sleep(start + 30 - now())
        await asyncio.sleep(0.1)
        (entry,) = api.emu.report().accepted
        assert entry.time == pytest.approx(30.0, abs=0.01)


async def test_configured_faults_are_active_from_start() -> None:
    """Faults given in the config apply from the first request."""
    async with running(faults=(HttpFault("error_5xx", route="any", times=1),)) as api:
        assert (await api.request("GET", "/v1/credits")).status == 500
        assert (await api.request("GET", "/v1/credits")).status == 200


async def test_control_routes_inject_and_reset() -> None:
    """POST /_emulator/faults injects faults from JSON; /_emulator/reset clears them."""
    async with running() as api:
        added = await api.request(
            "POST",
            "/_emulator/faults",
            body=[
                {"type": "http", "kind": "error_5xx", "route": "credits", "status": 502},
                {"type": "prediction", "name": "PhotoTypeError"},
            ],
        )
        assert added.json == {"added": 2}
        assert (await api.request("GET", "/v1/credits")).status == 502
        pid = await api.submit()
        assert (await api.until_terminal(pid))["error"]["name"] == "PhotoTypeError"
        assert (await api.request("POST", "/_emulator/reset")).status == 200
        assert (await api.request("GET", "/v1/credits")).status == 200


@pytest.mark.parametrize(
    "body",
    [
        {"type": "http", "kind": "explode"},
        {"type": "weather"},
        {"type": "prediction"},
        {"type": "prediction", "name": "X", "color": "red"},
        {"type": "http", "kind": "slow", "probability": 2},
        ["not an object"],
        "text",
    ],
)
async def test_control_route_refuses_bad_faults(body: object) -> None:
    """A malformed fault is a 400 BadRequest and adds nothing."""
    async with running() as api:
        reply = await api.request("POST", "/_emulator/faults", body=body)
        assert reply.status == 400
        assert reply.json["error"] == "BadRequest"
        assert (await api.request("GET", "/v1/credits")).status == 200


@pytest.mark.parametrize(
    ("factory", "error"),
    [
        (lambda: PredictionFault(""), TypeError),
        (lambda: PredictionFault("X", probability=1.5), ValueError),
        (lambda: HttpFault("boom"), ValueError),  # type: ignore[arg-type]
        (lambda: HttpFault("error_5xx", status=404), ValueError),
        (lambda: HttpFault("slow", delay=-1), ValueError),
        (lambda: HttpFault("slow", times=-1), ValueError),
        (lambda: HttpFault("slow", route="upload"), ValueError),  # type: ignore[arg-type]
    ],
)
def test_fault_rules_validate(factory: object, error: type[Exception]) -> None:
    """Fault rules refuse impossible values when built."""
    with pytest.raises(error):
        factory()  # type: ignore[operator]
