"""The report: what the emulator saw, in API seconds, as attrs and as JSON."""

from __future__ import annotations

import asyncio
import json

import attrs
import pytest
from emu_support import flat_body, now, running

from fashn_async.testing import (
    Emulator,
    EmulatorConfig,
    EmulatorReport,
    PredictionFault,
    WindowLimit,
)


async def test_duplicates_use_canonical_digests() -> None:
    """Equal payloads, whatever their key order, count as duplicates; others do not."""
    async with running(in_flight_limit=None) as api:
        body = flat_body(seed=1)
        await api.submit(body)
        await api.submit(dict(reversed(list(body.items()))))
        await api.submit(body)
        await api.submit(flat_body(seed=2))
        report = api.emu.report()
        digests = [entry.payload_digest for entry in report.accepted]
        assert digests[0] == digests[1] == digests[2] != digests[3]
        assert report.duplicates == 2


async def test_accepted_entries() -> None:
    """Each accepted submission lists id, API time, generations, digest and model."""
    async with running() as api:
        start = now()
        await asyncio.sleep(3)
        pid = await api.submit(flat_body(num_samples=2))
        (entry,) = api.emu.report().accepted
        assert entry.id == pid
        assert entry.time == pytest.approx(now() - start)
        assert entry.generations == 2
        assert len(entry.payload_digest) == 64
        assert entry.model_name == "tryon-v1"


async def test_status_and_terminal_bookkeeping() -> None:
    """Status calls per id, terminal times and first-seen-terminal times are recorded."""
    fault = PredictionFault("PoseError", match="#f")
    async with running(latency=(6.0, 6.0), faults=(fault,)) as api:
        done = await api.submit()
        failed = await api.submit(flat_body(model_image=api.emu.sample_image_url("model") + "#f"))
        canceled = await api.submit(flat_body(seed=5))
        await api.status(done)
        await asyncio.sleep(2)
        await api.request("GET", f"/v1/cancel/{canceled}")
        await asyncio.sleep(7)
        for pid in (done, done, failed):
            await api.status(pid)
        await api.request("GET", f"/v1/cancel/{done}")
        report = api.emu.report()
        assert report.status_calls == {done: 3, failed: 1}
        assert report.status_calls_total == 4
        assert report.terminal_at == pytest.approx({done: 6.0, failed: 6.0, canceled: 2.0})
        assert report.first_seen_terminal == pytest.approx({done: 9.0, failed: 9.0})
        assert report.cancels == [canceled, done]
        assert report.statuses == {done: "completed", failed: "failed", canceled: "canceled"}
        assert report.credits_used == 1
        assert report.in_progress == 0


async def test_max_in_progress_over_time() -> None:
    """max_in_progress is the most predictions that overlapped, in_progress the current."""
    async with running(latency=(10.0, 10.0)) as api:
        for _ in range(3):
            await api.submit()
        await asyncio.sleep(10)
        await api.submit()
        await api.submit()
        report = api.emu.report()
        assert (report.max_in_progress, report.in_progress) == (3, 2)


async def test_report_times_are_api_seconds() -> None:
    """Report times are loop seconds divided by time_scale."""
    async with running(time_scale=0.1, latency=(5.0, 5.0)) as api:
        start = now()
        await asyncio.sleep(1.0)
        pid = await api.submit()
        await asyncio.sleep(1.0)
        report = api.emu.report()
        assert report.accepted[0].time == pytest.approx(10.0)
        assert report.terminal_at[pid] == pytest.approx(15.0)
        assert report.now == pytest.approx((now() - start) / 0.1)


async def test_report_is_frozen() -> None:
    """The report is a frozen snapshot; its lists are copies."""
    async with running() as api:
        await api.submit()
        report = api.emu.report()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            report.duplicates = 5  # type: ignore[misc]
        report.accepted.clear()
        await api.submit()
        assert len(report.accepted) == 0
        assert len(api.emu.report().accepted) == 2


async def test_report_json_and_route() -> None:
    """to_json gives JSON-ready builtins; GET /_emulator/report serves the same."""
    async with running(submit_limit=WindowLimit(1, 60.0)) as api:
        await api.submit()
        await api.run(flat_body())
        report = api.emu.report()
        data = report.to_json()
        assert set(data) == {field.name for field in attrs.fields(EmulatorReport)}
        assert json.loads(json.dumps(data)) == data
        assert data["rejected"] == {"RateLimitExceeded": 1}
        assert set(data["accepted"][0]) == {
            "id",
            "time",
            "generations",
            "payload_digest",
            "model_name",
        }
        served = await api.request("GET", "/_emulator/report")
        assert served.status == 200
        assert {k: v for k, v in served.json.items() if k != "now"} == {
            k: v for k, v in data.items() if k != "now"
        }


async def test_emulator_lifecycle_errors() -> None:
    """Using a stopped emulator, or starting one twice, raises a clear error."""
    emu = Emulator()
    for use in (lambda: emu.url, emu.report, emu.clear_faults):
        with pytest.raises(RuntimeError, match="not running"):
            use()
    async with emu:
        with pytest.raises(RuntimeError, match="already running"):
            await emu.start()
        with pytest.raises(TypeError):
            emu.inject("boom")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="kind"):
            emu.sample_image_url("hat")
        assert emu.config == EmulatorConfig()
        assert emu.api_key == "fashn-test-key"
        assert emu.url.startswith("http://127.0.0.1:")
    assert "stopped" in repr(emu)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_scale": 0},
        {"time_scale": float("inf")},
        {"latency": (5.0, 1.0)},
        {"latency": (-1.0, 1.0)},
        {"in_flight_limit": 0},
        {"credits": -1},
        {"credits": True},
        {"max_body_bytes": 0},
        {"api_key": ""},
        {"submit_limit": 25},
        {"faults": ["boom"]},
        {"retry_after": "yes"},
    ],
)
def test_config_refuses_impossible_values(kwargs: dict[str, object]) -> None:
    """EmulatorConfig validates at construction."""
    with pytest.raises((TypeError, ValueError)):
        EmulatorConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("args", [(0, 60.0), (25, 0.0), (25, -1.0), (2.5, 60.0)])
def test_window_limit_validates(args: tuple[object, object]) -> None:
    """WindowLimit needs a positive int limit and a positive period."""
    with pytest.raises((TypeError, ValueError)):
        WindowLimit(*args)  # type: ignore[arg-type]


def test_config_hides_the_key_in_repr() -> None:
    """The config's repr does not show the API key."""
    assert "fashn-test-key" not in repr(EmulatorConfig())
