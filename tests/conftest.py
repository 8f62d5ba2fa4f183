"""Fixtures: a real emulator on 127.0.0.1 and a client pointed at it.

``@pytest.mark.emulator(**EmulatorConfig kwargs)`` and ``@pytest.mark.client(**AsyncFashn
kwargs)`` configure them per test. All loop time is fast-forwarded (looptime), so the
emulator's 5-11 s latencies and 60 s windows cost no real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fashn_async import AsyncFashn
from fashn_async.testing import Emulator, EmulatorConfig


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "emulator(**kwargs): EmulatorConfig for the test")
    config.addinivalue_line("markers", "client(**kwargs): AsyncFashn options for the test")


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


@pytest.fixture(autouse=True)
async def _no_stray_tasks() -> AsyncIterator[None]:
    """Every test must end with no task of ours still running."""
    yield
    current = asyncio.current_task()
    stray = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not stray, f"tasks left running: {stray}"
