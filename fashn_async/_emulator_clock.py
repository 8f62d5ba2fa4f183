"""Learning an emulator's time scale, so that a client can run on its clock.

An emulator (``fashn_async.testing``) answers ``GET /_emulator/config`` with its
``time_scale``; the real API has no such route. The command line asks once when
``--base-url`` points anywhere but the real API and ``--time-scale`` is not given, then
scales its client to match with :func:`scaled_timing`, the one place a time scale is
applied: the command line and ``Emulator.client()`` both use it, so a client on an
emulator's clock waits the same scaled windows, polls and retry backoffs whichever made it.
The real API is never asked.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TypedDict
from urllib.parse import urlsplit

import aiohttp
import attrs

from fashn_async._http import Transport
from fashn_async._limits import Limits
from fashn_async._polling import Polling
from fashn_async._redact import shown_url
from fashn_async._retry import RetryPolicy
from fashn_async._validators import in_range
from fashn_async._version import __version__
from fashn_async.errors import ConfigurationError, FashnError

__all__ = [
    "CONFIG_PATH",
    "Timing",
    "TimingOptions",
    "describe",
    "emulator_time_scale",
    "learn_time_scale",
    "scaled_timing",
    "should_ask",
    "time_scale_from",
]

#: The emulator's route that tells its configuration (it needs the API key).
CONFIG_PATH = "/_emulator/config"
#: Hosts of the real API: never asked.
API_HOSTS = frozenset({"api.fashn.ai"})
#: Seconds the question may take: an emulator on loopback answers at once.
ASK_TIMEOUT = 5.0


class TimingOptions(TypedDict):
    """The keyword arguments of ``AsyncFashn`` that carry time."""

    limits: Limits
    polling: Polling
    retry: RetryPolicy


@attrs.frozen
class Timing:
    """A client's time-bound policies on one clock.

    Attributes:
        factor: Seconds on this clock per API second (``EmulatorConfig.time_scale``).
        limits: The rolling windows and margin, scaled.
        polling: When to ask for a status, scaled.
        retry: Backoff and the longest Retry-After honoured, scaled.
    """

    factor: float
    limits: Limits
    polling: Polling
    retry: RetryPolicy

    def seconds(self, api_seconds: float) -> float:
        """``api_seconds`` (a duration in the API's time) on this clock."""
        return api_seconds * self.factor

    def client_options(self) -> TimingOptions:
        """Keyword arguments of ``AsyncFashn``: ``limits``, ``polling`` and ``retry``."""
        return TimingOptions(limits=self.limits, polling=self.polling, retry=self.retry)


def scaled_timing(
    factor: float,
    *,
    limits: Limits | None = None,
    polling: Polling | None = None,
    retry: RetryPolicy | None = None,
) -> Timing:
    """A client's limits, polling and retry policy, given in API seconds, on a clock
    running ``1/factor`` times faster (an emulator's ``time_scale``).

    Network timeouts (``timeout``, ``connect_timeout``) are not scaled: they guard the
    network, which runs no faster for a fast emulator.

    Args:
        factor: Seconds per API second, > 0 (1.0: the real API's clock, nothing changes).
        limits: Defaults to ``Limits()``.
        polling: Defaults to ``Polling()``.
        retry: Defaults to ``RetryPolicy()``.
    """
    limits = limits if limits is not None else Limits()
    polling = polling if polling is not None else Polling()
    retry = retry if retry is not None else RetryPolicy()
    if factor == 1.0:
        return Timing(factor, limits, polling, retry)
    try:
        return Timing(factor, limits.scaled(factor), polling.scaled(factor), retry.scaled(factor))
    except ConfigurationError as exc:  # (it names the value scaled, not the one given)
        raise ConfigurationError(
            f"{exc.message}: a value given in API seconds, scaled by the time scale "
            f"{factor:g}, is out of its range"
        ) from None


def should_ask(base_url: str) -> bool:
    """Whether ``base_url`` may be an emulator: any http(s) URL but the real API's."""
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and host not in API_HOSTS


def time_scale_from(data: object) -> float | None:
    """The time scale an emulator's config answer announces; ``None`` if it is not one."""
    if not isinstance(data, dict) or data.get("emulator") != "fashn-async":
        return None
    scale = data.get("time_scale")
    if not in_range(scale, 0.0, sys.float_info.max, open_low=True):
        return None
    return float(scale)


async def emulator_time_scale(base_url: str, api_key: str) -> float | None:
    """Ask the server at ``base_url`` for its time scale, if it is an emulator.

    Args:
        base_url: The API address the client will use.
        api_key: The key the client will use (the emulator's routes need it).

    Returns:
        The emulator's ``time_scale``; ``None`` for the real API (not asked), a server
        that is not an emulator, or one that does not answer within ``ASK_TIMEOUT``
        seconds. Never raises for those: the caller then runs at the API's own time.
    """
    if not should_ask(base_url):
        return None
    transport = Transport(
        base_url=base_url,
        api_key=api_key,
        timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT),
        connections=1,
        user_agent=f"fashn-async/{__version__}",
    )
    try:
        await transport.open()
        response = await transport.request("GET", CONFIG_PATH)
    except FashnError:  # not reachable, or no answer: take it as no emulator
        return None
    finally:
        await transport.close()
    return time_scale_from(response.data) if response.status == 200 else None


def describe(base_url: str, scale: float) -> str:
    """The line the command line prints when it learned a time scale."""
    if scale == 1:
        return f"{shown_url(base_url)} is a fashn-async emulator, at the API's own speed"
    return (
        f"{shown_url(base_url)} is a fashn-async emulator running time x{1 / scale:g} "
        f"(/_emulator/config): limits, polling and retry backoff scaled by {scale:g} to match "
        "(--time-scale overrides)"
    )


def learn_time_scale(base_url: str, api_key: str | None, say: Callable[[str], None]) -> float:
    """The time scale for a command without ``--time-scale``: the emulator's, else 1.

    For synchronous callers (the command line): runs its own event loop.

    Args:
        base_url: ``--base-url``.
        api_key: ``--api-key`` or ``FASHN_API_KEY``; without one, nothing is asked.
        say: Prints the line saying what was learned.
    """
    if not api_key:
        return 1.0
    scale = asyncio.run(emulator_time_scale(base_url, api_key))
    if scale is None:
        return 1.0
    say(describe(base_url, scale))
    return scale
