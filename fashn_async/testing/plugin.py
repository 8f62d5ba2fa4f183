"""pytest plugin: an emulated FASHN API for your tests (registered as ``fashn_async``).

Fixtures (async, need pytest-asyncio):

``fashn_emulator``
    A running :class:`fashn_async.testing.Emulator`. Configure it per test with the
    marker ``@pytest.mark.fashn_emulator(time_scale=0.01, credits=10)`` (keyword arguments
    of :class:`~fashn_async.testing.EmulatorConfig`), or override ``fashn_emulator_config``.
``fashn_client``
    An ``AsyncFashn`` client pointed at ``fashn_emulator``.

This module imports nothing heavy: the emulator (and Pillow) are imported inside the
fixtures, so installing the package never breaks a test run that does not use them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fashn_async import AsyncFashn
    from fashn_async.testing import Emulator, EmulatorConfig


MARKER = "fashn_emulator"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``fashn_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**config): EmulatorConfig keyword arguments for the fashn_emulator fixture.",
    )


@pytest.fixture
def fashn_emulator_config(request: pytest.FixtureRequest) -> EmulatorConfig:
    """The EmulatorConfig of ``fashn_emulator``: the marker's keywords, else defaults."""
    from fashn_async.testing import EmulatorConfig

    kwargs: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
        kwargs.update(marker.kwargs)
    return EmulatorConfig(**kwargs)


# The async fixtures need pytest-asyncio; without it, the plugin only registers the marker.
if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def fashn_emulator(fashn_emulator_config: EmulatorConfig) -> AsyncIterator[Emulator]:
        """A running FASHN API emulator on a free loopback port."""
        from fashn_async.testing import Emulator

        async with Emulator(fashn_emulator_config) as emulator:
            yield emulator

    @pytest_asyncio.fixture
    async def fashn_client(fashn_emulator: Emulator) -> AsyncIterator[AsyncFashn]:
        """An ``AsyncFashn`` client talking to ``fashn_emulator``."""
        from fashn_async import AsyncFashn

        async with AsyncFashn(
            api_key=fashn_emulator.api_key, base_url=fashn_emulator.url
        ) as client:
            yield client
