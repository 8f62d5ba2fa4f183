"""The pytest plugin's fashn_emulator fixture and marker (the client fixture is tested
with the client)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest

from fashn_async import AsyncFashn, Limits
from fashn_async.testing import Emulator


async def _credits(emu: Emulator) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(emu.url + "/v1/credits", headers=headers) as reply,
    ):
        assert reply.status == 200
        body = await reply.json()
        return dict(body["credits"])


async def test_fashn_emulator_fixture(fashn_emulator: Emulator) -> None:
    """fashn_emulator is a running emulator with the default configuration."""
    assert fashn_emulator.config.submit_limit is not None
    assert fashn_emulator.config.submit_limit.limit == 25
    assert (await _credits(fashn_emulator))["total"] > 0


@pytest.mark.fashn_emulator(credits=7, time_scale=0.5)
async def test_fashn_emulator_marker(fashn_emulator: Emulator) -> None:
    """The fashn_emulator marker's keywords configure the fixture's emulator."""
    assert fashn_emulator.config.time_scale == 0.5
    assert (await _credits(fashn_emulator))["total"] == 7


async def test_fixture_emulator_runs_predictions(fashn_emulator: Emulator) -> None:
    """A fixture emulator (started before fake time began) runs predictions to the end."""
    headers = {"Authorization": f"Bearer {fashn_emulator.api_key}"}
    body = {
        "model_image": fashn_emulator.sample_image_url("model"),
        "garment_image": fashn_emulator.sample_image_url("garment"),
        "category": "tops",
    }
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(fashn_emulator.url + "/v1/run", json=body) as reply:
            pid = (await reply.json())["id"]
        for _ in range(30):
            async with http.get(f"{fashn_emulator.url}/v1/status/{pid}") as reply:
                status = (await reply.json())["status"]
            if status == "completed":
                break
            await asyncio.sleep(1)
    assert status == "completed"
    report = fashn_emulator.report()
    assert 5.0 <= report.terminal_at[pid] - report.accepted[0].time <= 11.0


def test_plugin_imports_nothing_heavy() -> None:
    """Loading the plugin imports neither Pillow nor the emulator itself."""
    code = (
        "import sys, fashn_async.testing.plugin\n"
        "heavy = [m for m in ('PIL', 'fashn_async.testing._emulator') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603 - our own interpreter


@pytest.mark.fashn_emulator(time_scale=0.01)
async def test_fashn_client_follows_the_marker(
    fashn_client: AsyncFashn, fashn_emulator: Emulator
) -> None:
    """fashn_client runs on the marker's time scale: limits scaled, a try-on in API time."""
    assert fashn_client.limits == Limits().scaled(0.01)
    started = asyncio.get_running_loop().time()
    await fashn_client.run(
        model_image=fashn_emulator.sample_image_url("model"),
        garment_image=fashn_emulator.sample_image_url("garment"),
        category="tops",
    )
    assert asyncio.get_running_loop().time() - started < 0.5  # 50 API s; 5.95 s unscaled
