"""pytest plugin: an emulated FASHN API for your tests (registered as ``fashn_async``).

Installed with the package (``pip install 'fashn-async[emulator]' pytest``), it gives:

``fashn_emulator``
    A running :class:`fashn_async.testing.Emulator` on a free loopback port. Configure it
    per test with ``@pytest.mark.fashn_emulator(time_scale=0.01, credits=10)`` (keyword
    arguments of :class:`~fashn_async.testing.EmulatorConfig`), or override the
    ``fashn_emulator_config`` fixture.
``fashn_client``
    An open ``AsyncFashn`` on ``fashn_emulator``, from :meth:`Emulator.client`: its
    limits and polling run on the emulator's clock, so ``time_scale=0.01`` makes the
    whole test a hundred times faster, not only the server.

The fixtures are async; each test runs them on whichever async runner it uses. One line
of setup, for the runner you have:

- anyio (installed with fashn-async, nothing more to add): ``pytestmark =
  pytest.mark.anyio`` in the test module (or ``@pytest.mark.anyio`` on a test). The
  emulator needs the asyncio backend; on another one the test is skipped.
- pytest-asyncio, auto mode: ``asyncio_mode = "auto"`` in the pytest configuration.
- pytest-asyncio, strict mode (its default): ``@pytest.mark.asyncio`` on the test.

This module imports nothing heavy: the emulator (and Pillow) are imported inside the
fixtures, so installing the package never breaks a test run that does not use them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import types
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fashn_async import AsyncFashn
    from fashn_async.testing import Emulator, EmulatorConfig


MARKER = "fashn_emulator"
_OURS = "_fashn_async_fixture"

SETUP_HELP = (
    "the fixtures of fashn_async are async: run the test with an async runner, "
    "e.g. @pytest.mark.anyio (anyio comes with fashn-async), or install pytest-asyncio "
    'and set asyncio_mode = "auto" (or mark the test @pytest.mark.asyncio)'
)


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


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pytest.skip("the FASHN emulator runs on asyncio (aiohttp): use the asyncio backend")


async def _emulator(fashn_emulator_config: EmulatorConfig) -> AsyncIterator[Emulator]:
    """A running FASHN API emulator on a free loopback port."""
    _require_asyncio()
    from fashn_async.testing import Emulator

    async with Emulator(fashn_emulator_config) as emulator:
        yield emulator


async def _client(fashn_emulator: Emulator) -> AsyncIterator[AsyncFashn]:
    """An open ``AsyncFashn`` on ``fashn_emulator``, its limits and polling on its clock."""
    async with fashn_emulator.client() as client:
        yield client


def _plain_copy(function: Callable[..., Any]) -> Callable[..., Any]:
    """The same function without pytest-asyncio's mark (a new function object)."""
    assert isinstance(function, types.FunctionType)
    copy = types.FunctionType(
        function.__code__,
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copy.__annotations__ = dict(function.__annotations__)
    copy.__doc__ = function.__doc__
    return copy


def _no_runner(argname: str) -> Callable[..., Any]:
    def fail(**_fixtures: Any) -> Any:
        pytest.fail(f"{argname}: {SETUP_HELP}", pytrace=False)

    return fail


def _runs_on_pytest_asyncio(request: pytest.FixtureRequest) -> bool:
    if not request.config.pluginmanager.has_plugin("asyncio"):
        return False
    import pytest_asyncio

    return bool(pytest_asyncio.is_async_test(request.node))


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_fixture_setup(
    fixturedef: Any, request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """Run our async fixtures on the test's own runner: anyio's, or pytest-asyncio's.

    Where pytest-asyncio is installed our fixtures carry its mark (its strict mode runs
    only marked fixtures). For a test that anyio runs, the unmarked twin is set up
    instead, so that pytest-asyncio leaves it to anyio.
    """
    function = fixturedef.func
    if not getattr(function, _OURS, False) or _runs_on_pytest_asyncio(request):
        return (yield)
    if "anyio_backend" in request.fixturenames:
        fixturedef.func = _PLAIN[function]
    else:  # failed by the fixture itself, so pytest records the error as usual
        fixturedef.func = _no_runner(fixturedef.argname)
    try:
        return (yield)
    finally:
        fixturedef.func = function


_PLAIN = {function: _plain_copy(function) for function in (_emulator, _client)}
for _function in _PLAIN:
    setattr(_function, _OURS, True)

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    fashn_emulator = pytest_asyncio.fixture(_emulator, name="fashn_emulator")
    fashn_client = pytest_asyncio.fixture(_client, name="fashn_client")
else:
    fashn_emulator = pytest.fixture(_emulator, name="fashn_emulator")
    fashn_client = pytest.fixture(_client, name="fashn_client")
