"""The suite itself fails a test on which asyncio logs an ERROR (tests/conftest.py), so
every batch test above also proves its exits quiet."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import _ASYNCIO_ERRORS

pytest_plugins = ["pytester"]

LEAKY = '''
import asyncio


async def test_leaks_a_task_exception() -> None:
    """A task fails and nobody retrieves its exception."""

    async def fail() -> None:
        raise RuntimeError("nobody looks at me")

    task = asyncio.ensure_future(fail())
    await asyncio.sleep(0)
    del task


async def test_quiet() -> None:
    """Nothing logged."""
    await asyncio.sleep(0)
'''


def test_an_asyncio_error_log_fails_the_test(pytester: pytest.Pytester) -> None:
    """A never-retrieved task exception (logged by asyncio at ERROR) fails its test; a
    quiet test next to it passes."""
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    # In-process, this session's own check heard the inner error too: it is not ours.
    _ASYNCIO_ERRORS.records.clear()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*asyncio logged 1 error(s)*", "*never retrieved*"])
