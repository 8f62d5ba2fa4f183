"""The SDK under uvloop, the event loop web services run it on: the same decisions as on
asyncio's own loop, over real loopback HTTP, through a real proxy.

uvloop keeps libuv's clock, which looptime cannot fast-forward, so each test here runs
its own loop (``asyncio.Runner(loop_factory=...)``) in real time against an emulator at
1/100 of the API's speed, and asserts outcomes (errors, requests, what was paid), never
durations. uvloop is in the ``test`` extra (not on Windows, where it does not exist);
missing, these tests skip, or fail in CI (``FASHN_TESTS_REQUIRE_SYSTEM=1``).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from proxy_support import Tinyproxy
from test_network_secrets import assert_no_key

from fashn_async import TryOnRequest, errors
from fashn_async.testing import Emulator, EmulatorConfig, HttpFault
from fashn_async.testing._config import _HTTP_FAULT_KINDS

try:
    import uvloop
except ImportError:  # pragma: no cover - the test extra installs it
    uvloop = None

pytestmark = pytest.mark.looptime(False)  # uvloop's own clock: real time

SCALE = 0.01
KEY = "sk-live-SECRET-0123456789abcdef"
#: Every kind the emulator can disturb an answer with, on the two routes a try-on uses.
FAULTS = [(kind, route) for kind in _HTTP_FAULT_KINDS for route in ("run", "status")]

Loop = Callable[[], asyncio.AbstractEventLoop]


def uvloop_factory() -> Loop:
    """uvloop's loop factory; its absence skips (or fails in CI)."""
    if uvloop is None:
        reason = "uvloop is not installed (pip install 'fashn-async[test]'; .ci/run does)"
        if os.environ.get("FASHN_TESTS_REQUIRE_SYSTEM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run_on(loop: Loop, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main()`` on a fresh loop of ``loop``'s kind, in debug mode, with every
    warning (an unclosed session, a never-awaited coroutine) raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with asyncio.Runner(loop_factory=loop, debug=True) as runner:
            result = runner.run(main())  # type: ignore[arg-type]
            stray = asyncio.all_tasks(runner.get_loop())
            assert not stray, f"tasks left running: {stray}"
            return result


def test_uvloop_is_the_loop_under_test() -> None:
    """The loop these tests run on is uvloop's, not asyncio's own."""
    factory = uvloop_factory()

    async def name() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_on(factory, name).startswith("uvloop")


def _request(emu: Emulator) -> TryOnRequest:
    return TryOnRequest(
        model_image=emu.sample_image_url("model"),
        garment_image=emu.sample_image_url("garment"),
        category="tops",
    )


async def _outcome(kind: str, route: str) -> tuple[str, int, int, int]:
    """One try-on with one answer disturbed: what it ended in (its status, or the error's
    type), the POSTs sent, the predictions created, and the cancels sent."""
    async with Emulator(EmulatorConfig(api_key=KEY, time_scale=SCALE)) as emu:
        emu.inject(HttpFault(kind, route=route, times=1, delay=5.0))  # type: ignore[arg-type]
        async with emu.client(timeout=5.0) as client:
            try:
                result = await client.run(_request(emu))
            except errors.FashnError as error:
                assert_no_key(error)
                ended = type(error).__name__
            else:
                ended = f"completed with {len(result.output)} output"

        report = emu.report()
    return ended, report.requests_by_route.get("run", 0), len(report.accepted), len(report.cancels)


@pytest.mark.parametrize(("kind", "route"), FAULTS)
def test_every_disturbed_answer_is_decided_alike_on_uvloop(kind: str, route: str) -> None:
    """Each answer a network or gateway can give, on POST and on polling: uvloop ends the
    try-on as asyncio's loop does (the same error type or status), sends the same POSTs
    (a paid one never twice) and shows the key nowhere."""
    on_uvloop = run_on(uvloop_factory(), lambda: _outcome(kind, route))
    on_asyncio = run_on(asyncio.new_event_loop, lambda: _outcome(kind, route))
    assert on_uvloop == on_asyncio
    assert on_uvloop[2] <= 1  # paid once at most


def test_a_batch_through_a_real_proxy_on_uvloop(tmp_path: Path) -> None:
    """A batch of 30 on uvloop through tinyproxy: every try-on done and its image saved,
    each paid once (30 POSTs, 30 predictions), no 429, every request through the proxy."""
    proxy = Tinyproxy(tmp_path)
    proxy.start()

    async def main() -> tuple[int, int, Any]:
        async with Emulator(EmulatorConfig(time_scale=SCALE)) as emu:
            async with emu.client(proxy=proxy.url, trust_env=False) as client:
                pairs = [_request(emu) for _ in range(30)]
                done = 0
                async for result in client.batch(pairs):
                    assert result.ok, result.error
                    done += len(await result.save(tmp_path / "out" / str(result.index)))
            report = emu.report()
        return done, len(report.accepted), report

    try:
        saved, created, report = run_on(uvloop_factory(), main)
    finally:
        proxy.stop()
    assert saved == created == report.requests_by_route["run"] == 30
    assert sum(report.rejected.values()) == 0
    assert proxy.forwarded("/v1/run") == 30
    assert proxy.forwarded("/v1/status/") == report.requests_by_route["status"]


def test_a_cancelled_run_cancels_its_prediction_on_uvloop() -> None:
    """A request handler's run() cancelled mid-poll (``asyncio.timeout``) on uvloop: the
    prediction is cancelled on the server before the cancellation comes out, paid once."""

    async def main() -> tuple[list[str], int, dict[str, str]]:
        async with Emulator(EmulatorConfig(time_scale=SCALE, latency=(30, 40))) as emu:
            async with emu.client() as client:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.1):  # 10 API s: polling
                        await client.run(_request(emu))
                report = emu.report()
        return report.cancels, len(report.accepted), report.statuses

    cancels, created, statuses = run_on(uvloop_factory(), main)
    assert created == 1
    assert len(cancels) == 1
    assert statuses[cancels[0]] == "canceled"


def test_https_through_a_proxy_tunnel_on_uvloop(tmp_path: Path) -> None:
    """HTTPS with a company CA (``verify=``) through tinyproxy's CONNECT tunnel, on
    uvloop: done and saved; the proxy saw tunnels, never a path."""
    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(served)
    bundle = tmp_path / "corp-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    proxy = Tinyproxy(tmp_path)
    proxy.start()

    async def main() -> tuple[int, str]:
        async with Emulator(EmulatorConfig(time_scale=SCALE), ssl=served) as emu:
            options = {"proxy": proxy.url, "trust_env": False, "verify": bundle}
            async with emu.client(**options) as client:
                result = await client.run(_request(emu))
                saved = await result.save(tmp_path / "out")
            return len(saved), emu.url.rsplit(":", 1)[1]

    try:
        saved, port = run_on(uvloop_factory(), main)
    finally:
        proxy.stop()
    assert saved == 1
    assert proxy.forwarded(f"CONNECT 127.0.0.1:{port}") >= 1
    assert proxy.forwarded("/v1/") == 0
