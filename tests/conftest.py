"""Fixtures: a real emulator on 127.0.0.1, a client pointed at it, and a real redis-server.

``@pytest.mark.emulator(**EmulatorConfig kwargs)`` and ``@pytest.mark.client(**AsyncFashn
kwargs)`` configure them per test. All loop time is fast-forwarded (looptime), so the
emulator's 5-11 s latencies and 60 s windows cost no real time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from proxy_support import Tinyproxy
from redis_support import RedisServer

from fashn_async import AsyncFashn
from fashn_async.testing import Emulator, EmulatorConfig


class _AsyncioErrors(logging.Handler):
    """Keeps every ERROR record of the ``asyncio`` logger ("Task exception was never
    retrieved", "Task was destroyed but it is pending!", an exception in a callback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_ASYNCIO_ERRORS = _AsyncioErrors()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "emulator(**kwargs): EmulatorConfig for the test")
    config.addinivalue_line("markers", "client(**kwargs): AsyncFashn options for the test")
    logging.getLogger("asyncio").addHandler(_ASYNCIO_ERRORS)


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger("asyncio").removeHandler(_ASYNCIO_ERRORS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Fail the test if asyncio logged an ERROR while it ran, its loop closing included.

    Runs after every fixture finalizer (the event loop's too). A collection of the young
    generations first makes a task dropped in a reference cycle with an unretrieved
    exception report itself now, inside this test (a full collection per test would
    cost a minute of the suite; the session's end does one, below).
    """
    try:
        yield
    finally:
        gc.collect(1)
        _fail_on_asyncio_errors("")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A last full collection: an error logged now fails the run, though no test does."""
    gc.collect()
    if _ASYNCIO_ERRORS.records:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        try:
            _fail_on_asyncio_errors(" after the last test")
        except pytest.fail.Exception as failure:
            print(f"\n{failure.msg}")


def _fail_on_asyncio_errors(when: str) -> None:
    records, _ASYNCIO_ERRORS.records = _ASYNCIO_ERRORS.records, []
    if records:
        lines = "\n".join(
            f"{r.getMessage()}\n{logging.Formatter().formatException(r.exc_info)}"
            if r.exc_info
            else r.getMessage()
            for r in records
        )
        pytest.fail(f"asyncio logged {len(records)} error(s){when}:\n{lines}", pytrace=False)


@pytest.fixture
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[Emulator]:
    """A running emulator, configured by the test's ``emulator`` marker."""
    marker = request.node.get_closest_marker("emulator")
    async with Emulator(EmulatorConfig(**(marker.kwargs if marker else {}))) as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator, request: pytest.FixtureRequest) -> AsyncIterator[AsyncFashn]:
    """An open client on the emulator, configured by the test's ``client`` marker."""
    marker = request.node.get_closest_marker("client")
    async with AsyncFashn(
        api_key=emulator.api_key, base_url=emulator.url, **(marker.kwargs if marker else {})
    ) as fashn:
        yield fashn


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port (tests/redis_support.py)."""
    with RedisServer.running() as server:
        yield server


@pytest.fixture
async def peek(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain Redis client on ``redis_server``, strings decoded: to look at what the
    coordinators wrote, or to lose it."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(autouse=True)
async def _no_stray_tasks() -> AsyncIterator[None]:
    """Every test must end with no task of ours still running."""
    yield
    current = asyncio.current_task()
    stray = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not stray, f"tasks left running: {stray}"


#: What the environment may say of proxies and certificates.
NETWORK_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    """A running tinyproxy on a free loopback port (tests/proxy_support.py)."""
    proxy = Tinyproxy(tmp_path)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy or certificate variables from the machine (either case): each test sets
    its own."""
    for name in NETWORK_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch
