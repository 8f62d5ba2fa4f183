"""Running the emulator: in-process as an async context manager, or standalone."""

from __future__ import annotations

import asyncio
import math
import signal
import ssl as _ssl
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp
from aiohttp import web

from ._app import build_app
from ._config import EmulatorConfig, HttpFault, PredictionFault
from ._report import EmulatorReport
from ._state import EmulatorState

if TYPE_CHECKING:
    from fashn_async import AsyncFashn, Limits, Polling, RetryPolicy
    from fashn_async._emulator_clock import TimingOptions

__all__ = ["Emulator", "client_timing", "serve"]

#: Real seconds a stopping server lets requests in progress finish.
SHUTDOWN_GRACE = 1.0


class Emulator:
    """The FASHN API emulated on a loopback port, for tests and demos.

    Example::

        async with (
            Emulator(EmulatorConfig(time_scale=0.01)) as emu,
            emu.client() as client,  # its limits and polling run on the same clock
        ):
            result = await client.run(
                model_image=emu.sample_image_url("model"),
                garment_image=emu.sample_image_url("garment"),
                category="tops",
            )

    Args:
        config: How it behaves; the defaults follow the real API.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one (read :attr:`url`).
        ssl: A server-side SSL context (its certificate loaded) to serve HTTPS, as the
            API does: then :attr:`url` is ``https://``, and a client must trust the
            certificate's CA (``AsyncFashn(verify=...)``). The emulator fetches image
            URLs (loopback only) without checking certificates.
    """

    __slots__ = ("_config", "_host", "_port", "_runner", "_session", "_ssl", "_state", "_url")

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, got {type(ssl).__name__}")
        self._config = config if config is not None else EmulatorConfig()
        self._host = host
        self._port = port
        self._ssl = ssl
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._state: EmulatorState | None = None
        self._url: str | None = None

    def __repr__(self) -> str:
        if self._state is None:
            return f"<Emulator stopped host={self._host!r} port={self._port}>"
        return (
            f"<Emulator url={self._url!r} predictions={len(self._state.predictions)} "
            f"time_scale={self._config.time_scale}>"
        )

    @property
    def config(self) -> EmulatorConfig:
        """The configuration it runs with."""
        return self._config

    @property
    def api_key(self) -> str:
        """The bearer token it accepts (a test key of its own)."""
        return self._config.api_key

    @property
    def url(self) -> str:
        """Base URL, such as ``http://127.0.0.1:41234`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("the emulator is not running: use `async with Emulator()`")
        return self._url

    def _running_state(self) -> EmulatorState:
        if self._state is None:
            raise RuntimeError("the emulator is not running: use `async with Emulator()`")
        return self._state

    def sample_image_url(self, kind: str) -> str:
        """Return the URL of a sample input image it serves: ``model`` or ``garment``."""
        if kind not in ("model", "garment"):
            raise ValueError(f"kind must be 'model' or 'garment', got {kind!r}")
        return f"{self.url}/samples/{kind}.png"

    def client(self, **options: Any) -> AsyncFashn:
        """Return an ``AsyncFashn`` for this emulator, on its clock; open it with ``async with``.

        The client gets :attr:`api_key` and :attr:`url`, and its limits, polling and
        retry backoff are scaled by ``config.time_scale``, so a fast emulator is met by a
        client as fast (``_emulator_clock.scaled_timing``, as the command line does;
        network timeouts are not scaled, nor are the durations given to a call, such as
        ``run(..., deadline=)``: those are real seconds). Without this,
        a client waits out the real API's 60 s windows against an emulator whose windows
        last 0.6 s.

        Args:
            **options: Keyword arguments of ``AsyncFashn``. ``limits``, ``polling`` and
                ``retry`` are given in API seconds, as for the real API, and scaled
                like the defaults; the others are passed as they are. ``trust_env``
                is False unless given (this emulator is on loopback, where a proxy from
                ``HTTP_PROXY`` would not reach it).

        Raises:
            RuntimeError: The emulator is not running.
            fashn_async.errors.ConfigurationError: An option ``AsyncFashn`` refuses.
        """
        from fashn_async import AsyncFashn
        from fashn_async._emulator_clock import scaled_timing

        timing = scaled_timing(
            self._config.time_scale,
            limits=options.pop("limits", None),
            polling=options.pop("polling", None),
            retry=options.pop("retry", None),
        )
        options.setdefault("api_key", self.api_key)
        options.setdefault("base_url", self.url)
        options.setdefault("trust_env", False)
        return AsyncFashn(**timing.client_options(), **options)

    def inject(self, fault: PredictionFault | HttpFault) -> None:
        """Put a fault rule in force, after those already there."""
        if not isinstance(fault, PredictionFault | HttpFault):
            raise TypeError(f"expected a PredictionFault or HttpFault, got {fault!r}")
        self._running_state().faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every fault rule, the configured ones included."""
        self._running_state().faults.clear()

    def report(self) -> EmulatorReport:
        """Return a snapshot of what it has seen so far."""
        return self._running_state().report()

    async def start(self) -> None:
        """Start listening; prefer ``async with``."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        # Image URLs are loopback ones (its own samples, a test's server): with TLS on,
        # its own certificate is not checked.
        fetching = aiohttp.TCPConnector(ssl=False) if self._ssl is not None else None
        session = aiohttp.ClientSession(trust_env=False, connector=fetching)
        state = EmulatorState(self._config, session)
        runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await session.close()
            raise
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        if host in ("0.0.0.0", "[::]", ""):  # noqa: S104 - a wildcard bind is reached on loopback
            host = "127.0.0.1"
        scheme = "https" if self._ssl is not None else "http"
        self._url = state.base_url = f"{scheme}://{host}:{port}"
        self._runner, self._session, self._state = runner, session, state

    async def aclose(self) -> None:
        """Stop listening, cancel its background work and wait for it to end."""
        runner, session, state = self._runner, self._session, self._state
        self._runner = self._session = self._state = None
        self._url = None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            if state is not None:
                await state.aclose()
            if session is not None:
                await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Emulator(config, host=host, port=port) as emulator:
            # The key printed is the emulator's own test key, never a real one.
            print(f"FASHN API emulator listening on {emulator.url}", flush=True)
            print(f"API key (emulator test key): {emulator.api_key}", flush=True)
            print(
                f"Sample images: {emulator.sample_image_url('model')} "
                f"{emulator.sample_image_url('garment')}",
                flush=True,
            )
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("FASHN API emulator stopped", file=sys.stderr, flush=True)


def serve(config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run an emulator until SIGINT or SIGTERM; blocks.

    Prints its URL and (test) API key on start. Its report is at ``GET /_emulator/report``;
    ``POST /_emulator/faults`` injects faults and ``POST /_emulator/reset`` clears them.

    Args:
        config: How it behaves; the defaults follow the real API.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
    """
    asyncio.run(_serve(config if config is not None else EmulatorConfig(), host, port))


def client_timing(
    time_scale: float,
    *,
    limits: Limits | None = None,
    polling: Polling | None = None,
    retry: RetryPolicy | None = None,
) -> TimingOptions:
    """``AsyncFashn``'s ``limits``, ``polling`` and ``retry`` on the clock of an emulator
    run with ``time_scale`` (``python -m fashn_async emulator --time-scale 0.01``, in
    another process), as :meth:`Emulator.client` sets them for one in this process::

        AsyncFashn(base_url=url, api_key="fashn-test-key", **client_timing(0.01))

    Args:
        time_scale: The emulator's: seconds per API second, above 0 (1.0: unchanged).
        limits, polling, retry: Given in API seconds, as for the real API (defaults:
            ``Limits()``, ``Polling()``, ``RetryPolicy()``), and scaled like them.

    Raises:
        fashn_async.errors.ConfigurationError: ``time_scale`` is not a number above 0.
    """
    from fashn_async._emulator_clock import scaled_timing
    from fashn_async.errors import ConfigurationError

    usable = isinstance(time_scale, int | float) and not isinstance(time_scale, bool)
    if not (usable and 0 < time_scale < math.inf):
        raise ConfigurationError(f"time_scale must be a number above 0, got {time_scale!r}")
    timing = scaled_timing(time_scale, limits=limits, polling=polling, retry=retry)
    return timing.client_options()
