"""The emulator's clock as users meet it: emu.client(), /_emulator/config, retention."""

from __future__ import annotations

import asyncio

import pytest
from emu_support import flat_body, now, running

from fashn_async import Limits, Polling, Rate, RetryPolicy
from fashn_async.errors import NotFoundError
from fashn_async.testing import Emulator, EmulatorConfig

# -- emu.client() ----------------------------------------------------------------------


async def test_client_runs_on_the_emulators_clock() -> None:
    """emu.client() scales limits, polling and backoff by the time scale, and reaches it."""
    async with Emulator(EmulatorConfig(time_scale=0.01)) as emu, emu.client() as client:
        assert client.base_url == emu.url
        assert client.limits == Limits().scaled(0.01)
        assert client._engine.poller.polling == Polling().scaled(0.01)
        assert client._engine.retry.initial == pytest.approx(RetryPolicy().initial * 0.01)
        started = now()
        result = await client.run(
            model_image=emu.sample_image_url("model"),
            garment_image=emu.sample_image_url("garment"),
            category="tops",
        )
        assert result.output
        # 0.05-0.11 s of latency; a client on API time would not poll before 5.95 s.
        assert now() - started < 0.5


async def test_client_options_are_in_api_seconds() -> None:
    """Limits given to emu.client() are API seconds, scaled like the defaults."""
    async with Emulator(EmulatorConfig(time_scale=0.1)) as emu:
        client = emu.client(limits=Limits(submit=Rate(10, 60.0), in_flight=2), timeout=5.0)
        assert client.limits.submit == Rate(10, 6.0)
        assert client.limits.in_flight == 2


def test_client_of_a_stopped_emulator_is_refused() -> None:
    """An emulator that is not running has no address to hand out."""
    with pytest.raises(RuntimeError, match="not running"):
        Emulator().client()


async def test_many_runs_at_time_scale_take_scaled_time() -> None:
    """Three concurrent try-ons at time_scale=0.01 end within 1.5 API minutes' worth."""
    async with Emulator(EmulatorConfig(time_scale=0.01)) as emu, emu.client() as client:
        started = now()
        await asyncio.gather(
            *(
                client.run(
                    model_image=emu.sample_image_url("model"),
                    garment_image=emu.sample_image_url("garment"),
                    category="tops",
                )
                for _ in range(3)
            )
        )
        assert now() - started < 0.9  # 90 API seconds at most; 11 s of latency expected


# -- GET /_emulator/config -------------------------------------------------------------


async def test_config_route_tells_the_time_scale() -> None:
    """GET /_emulator/config answers the time scale and retention, with the key only."""
    async with running(time_scale=0.05, status_retention=100.0) as api:
        reply = await api.request("GET", "/_emulator/config")
        assert reply.status == 200
        assert reply.json == {
            "emulator": "fashn-async",
            "time_scale": 0.05,
            "status_retention": 100.0,
        }
        assert "fashn-test-key" not in reply.raw.decode()
        refused = await api.request("GET", "/_emulator/config", auth=False)
        assert refused.status == 401


# -- retention -------------------------------------------------------------------------


async def test_status_answers_404_past_retention() -> None:
    """A prediction's status is 200 until status_retention after its end, then 404."""
    async with running(status_retention=100.0, latency=(5.0, 5.0)) as api:
        pid = await api.submit(flat_body())
        final = await api.until_terminal(pid)
        ended = api.emu.report().terminal_at[pid]
        await asyncio.sleep(ended + 99.0 - now())
        assert (await api.status(pid)).status == 200
        await asyncio.sleep(2.0)
        gone = await api.status(pid)
        assert gone.status == 404
        assert gone.json["error"] == "NotFound"
        assert "no longer tracked" in gone.json["message"]
        cancel = await api.request("GET", f"/v1/cancel/{pid}")
        assert cancel.status == 404
        assert final["status"] == "completed"


async def test_default_retention_is_72_hours_and_scaled() -> None:
    """By default the status is kept 72 API hours after the end (scaled by time_scale)."""
    async with running(time_scale=0.01, latency=(5.0, 5.0)) as api:
        pid = await api.submit(flat_body())
        await api.until_terminal(pid, every=0.01)
        await asyncio.sleep(72 * 3600 * 0.01 - 1.0)
        assert (await api.status(pid)).status == 200
        await asyncio.sleep(1.5)
        assert (await api.status(pid)).status == 404


async def test_retention_none_keeps_statuses() -> None:
    """status_retention=None keeps every status for the emulator's life."""
    async with running(time_scale=0.01, status_retention=None, latency=(1.0, 1.0)) as api:
        pid = await api.submit(flat_body())
        await api.until_terminal(pid, every=0.01)
        await asyncio.sleep(10 * 72 * 3600 * 0.01)  # ten times the default retention
        assert (await api.status(pid)).status == 200


async def test_running_prediction_never_expires() -> None:
    """Retention counts from the end: a prediction still running is never 404."""
    async with running(status_retention=1.0, latency=(50.0, 50.0)) as api:
        pid = await api.submit(flat_body())
        await asyncio.sleep(30.0)
        assert (await api.status(pid)).json["status"] == "processing"


async def test_client_status_past_retention_raises_not_found() -> None:
    """Through the client, an expired prediction's status raises NotFoundError."""
    config = EmulatorConfig(time_scale=0.01, status_retention=60.0)
    async with Emulator(config) as emu, emu.client() as client:
        prediction = await client.submit(
            model_image=emu.sample_image_url("model"),
            garment_image=emu.sample_image_url("garment"),
            category="tops",
        )
        final = await client.wait(prediction.id)
        assert final.status == "completed"
        await asyncio.sleep(61 * 0.01)
        with pytest.raises(NotFoundError):
            await client.status(prediction.id)
