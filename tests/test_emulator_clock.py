"""A client learning an emulator's time scale (GET /_emulator/config), and the CLI using it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from fashn_async import AsyncFashn, Limits, Polling, RetryPolicy
from fashn_async import cli as cli_module
from fashn_async._emulator_clock import (
    TimingOptions,
    describe,
    emulator_time_scale,
    learn_time_scale,
    scaled_timing,
    should_ask,
    time_scale_from,
)
from fashn_async.bulk import _command as bulk_command
from fashn_async.errors import ConfigurationError
from fashn_async.testing import Emulator, EmulatorConfig, sample_image
from tests.bulk_support import KEY, control, run_cli, standalone_emulator, write_catalog


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


def test_the_line_about_an_emulator_says_its_speed() -> None:
    """Scaled: its factor and what was scaled; at the API's own speed, just that."""
    assert describe("http://127.0.0.1:8000", 0.02).startswith(
        "http://127.0.0.1:8000 is a fashn-async emulator running time x50 "
    )
    assert describe("http://127.0.0.1:8000", 1.0) == (
        "http://127.0.0.1:8000 is a fashn-async emulator, at the API's own speed"
    )


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


def _timing_of(client: AsyncFashn) -> tuple[object, object, object]:
    """The limits, polling and retry policy a client's engine runs with."""
    engine = client._engine
    return engine.limits, engine.poller.polling, engine.retry


@pytest.mark.parametrize("command", ["run", "batch"])
def test_the_cli_client_is_scaled_like_emulator_client(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` and `batch` at --time-scale f build a client timed as Emulator.client() at f.

    Limits, polling and the retry backoff (max_retry_after included) all scale: a CLI on a
    fast emulator never waits the real API's backoffs. Nothing listens at the base URL;
    the client is seen as it is built (a real AsyncFashn, recorded, not replaced).
    """
    built: list[AsyncFashn] = []

    class Recorded(AsyncFashn):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            built.append(self)

    monkeypatch.setattr(cli_module, "AsyncFashn", Recorded)
    monkeypatch.setattr(bulk_command, "AsyncFashn", Recorded)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    common = ["--base-url", base_url, "--time-scale", "0.01", "--api-key", KEY]
    if command == "run":
        sample = tmp_path / "model.png"
        sample.write_bytes(sample_image("model"))
        args = ["run", "--model", str(sample), "--garment", str(sample), "--category", "tops",
                "--out", str(tmp_path / "out"), *common]  # fmt: skip
    else:
        catalog = write_catalog(tmp_path, 2, models=2)
        args = ["batch", str(catalog), "--out", str(tmp_path / "out"), "--progress", "quiet",
                "--no-report", *common]  # fmt: skip
    result = CliRunner().invoke(cli_module.main, args)
    assert result.exit_code != 0  # nothing to reach: it stops after building the client
    assert built, result.output

    async def emulator_client() -> AsyncFashn:
        async with Emulator(EmulatorConfig(time_scale=0.01)) as emu:
            return emu.client()

    expected = _timing_of(asyncio.run(emulator_client()))
    assert _timing_of(built[0]) == expected
    assert built[0]._engine.retry.max_retry_after == RetryPolicy().max_retry_after * 0.01


def test_scaled_timing_at_one_changes_nothing() -> None:
    """scaled_timing(1.0) is the given policies; any other factor scales all three."""
    assert scaled_timing(1.0).client_options() == TimingOptions(
        limits=Limits(), polling=Polling(), retry=RetryPolicy()
    )
    half = scaled_timing(0.5)
    assert (half.limits, half.polling, half.retry) == (
        Limits().scaled(0.5),
        Polling().scaled(0.5),
        RetryPolicy().scaled(0.5),
    )
    assert half.seconds(33.0) == 16.5


@pytest.mark.looptime(False)  # a standalone emulator: another process, real time
async def test_a_client_of_your_own_runs_on_a_standalone_emulators_clock() -> None:
    """``client_timing(time_scale)`` gives a client built by hand the limits, polling and
    retry of a standalone emulator's clock (only the CLI and ``emu.client()`` had them:
    a web service pointed at ``--time-scale 0.01`` waited out real 60 s windows). Its
    bad values are refused naming ``time_scale``."""
    from fashn_async.testing import client_timing

    with standalone_emulator("--time-scale", "0.01") as url:
        async with AsyncFashn(
            api_key=KEY, base_url=url, trust_env=False, **client_timing(0.01)
        ) as client:
            requests = [
                client.run(
                    model_image=f"{url}/samples/model.png",
                    garment_image=f"{url}/samples/garment.png",
                    category="tops",
                    seed=seed,
                )
                for seed in range(30)  # past one window of 25 submissions
            ]
            results = await asyncio.wait_for(asyncio.gather(*requests), 60)
        assert len(results) == 30
        assert control(url, "GET", "/_emulator/report")["rejected_by_route"] == {}
    for bad in (0, -1.0, True, "0.01", float("nan")):
        with pytest.raises(ConfigurationError, match="time_scale"):
            client_timing(bad)  # type: ignore[arg-type]


def test_a_value_out_of_range_once_scaled_says_it_was_scaled() -> None:
    """A setting valid in API seconds that scaling takes out of its range: the error says
    the value shown is the one given, scaled (it quoted 5e-08 for a target_lag of 5e-06,
    a value the user never wrote)."""
    with pytest.raises(ConfigurationError, match="target_lag") as info:
        scaled_timing(0.01, polling=Polling(target_lag=5e-6))
    assert "scaled by the time scale 0.01" in info.value.message
