"""A client learning an emulator's time scale (GET /_emulator/config), and the CLI using it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from fashn_async._emulator_clock import (
    emulator_time_scale,
    learn_time_scale,
    should_ask,
    time_scale_from,
)
from fashn_async.testing import Emulator, EmulatorConfig, sample_image
from tests.bulk_support import KEY, control, run_cli, standalone_emulator


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"emulator": "fashn-async", "time_scale": 0.01}, 0.01),
        ({"emulator": "fashn-async", "time_scale": 2}, 2.0),
        ({"emulator": "fashn-async", "time_scale": 0}, None),
        ({"emulator": "fashn-async", "time_scale": -1.0}, None),
        ({"emulator": "fashn-async", "time_scale": float("inf")}, None),
        ({"emulator": "fashn-async", "time_scale": True}, None),
        ({"emulator": "fashn-async", "time_scale": "0.01"}, None),
        ({"emulator": "other", "time_scale": 0.01}, None),
        ({"time_scale": 0.01}, None),
        ([0.01], None),
        (None, None),
        ("NotFound", None),
    ],
)
def test_time_scale_from_reads_only_an_emulators_answer(data: object, expected: object) -> None:
    """Only a fashn-async emulator's answer with a positive finite number is a time scale."""
    assert time_scale_from(data) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000/", True),
        ("https://emulator.internal", True),
        ("https://api.fashn.ai", False),
        ("https://API.fashn.ai/", False),
        ("ftp://127.0.0.1", False),
        ("not a url", False),
        ("http://[::1", False),
    ],
)
def test_the_real_api_is_never_asked(url: str, expected: bool) -> None:
    """Any http(s) base URL may be an emulator, except the real API's, which is never asked."""
    assert should_ask(url) is expected


async def test_an_emulator_tells_its_time_scale() -> None:
    """emulator_time_scale() reads a running emulator's time scale with the key."""
    async with Emulator(EmulatorConfig(time_scale=0.02)) as emu:
        assert await emulator_time_scale(emu.url, emu.api_key) == 0.02
        assert await emulator_time_scale(emu.url, "wrong-key") is None  # 401


async def test_other_servers_mean_no_time_scale() -> None:
    """A server without the route, or none at all, gives None and raises nothing."""
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        assert await emulator_time_scale(f"http://127.0.0.1:{port}", "key") is None
    finally:
        await runner.cleanup()
    assert await emulator_time_scale(f"http://127.0.0.1:{port}", "key") is None  # closed


def test_learn_time_scale_says_what_it_learned() -> None:
    """Without a key nothing is asked; the real API gives 1 and says nothing."""
    said: list[str] = []
    assert learn_time_scale("http://127.0.0.1:9", None, said.append) == 1.0
    assert said == []


@pytest.mark.looptime(False)  # real processes, real time
def test_cli_run_learns_the_emulators_time_scale(tmp_path: Path) -> None:
    """`fashn-async run --base-url <emulator>` without --time-scale runs on its clock."""
    model, garment = tmp_path / "m.png", tmp_path / "g.png"
    model.write_bytes(sample_image("model", size=(48, 64)))
    garment.write_bytes(sample_image("garment", size=(48, 64)))
    with standalone_emulator("--time-scale", "0.01") as url:
        done = run_cli(
            "run", "--model", str(model), "--garment", str(garment), "--category", "tops",
            "--out", str(tmp_path / "out"), "--base-url", url, FASHN_API_KEY=KEY,
        )  # fmt: skip
        report = control(url, "GET", "/_emulator/report")
    assert done.returncode == 0, done.stderr
    assert "fashn-async emulator running time x100" in done.stderr
    assert KEY not in done.stdout + done.stderr
    (pid,) = report["terminal_at"]
    # Polled on the emulator's clock: seen done within seconds of API time. On the API's
    # own clock its first poll would come 5.95 real s, 595 API s, after the submission.
    assert report["first_seen_terminal"][pid] - report["terminal_at"][pid] < 60
