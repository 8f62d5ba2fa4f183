"""Posting a prediction's final status to its webhook, with the API's retries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp

from ._limits import Clock
from ._predictions import Prediction
from ._report import Ledger

__all__ = ["RETRY_DELAYS", "deliver_webhook"]

#: API seconds before each retry: five retries over about five minutes, as documented.
RETRY_DELAYS: tuple[float, ...] = (10.0, 20.0, 40.0, 80.0, 150.0)
#: API seconds a receiver has to answer one POST (never under 1 real second).
ATTEMPT_TIMEOUT = 10.0


async def _wait_until_terminal(prediction: Prediction, clock: Clock) -> float:
    """Sleep until ``prediction`` has ended (or is canceled); return that moment."""
    while True:
        now = clock.now()
        await prediction.settle(now)
        now = clock.now()
        if not prediction.is_running(now):
            return now
        prediction.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                prediction.changed.wait(), timeout=max(prediction.next_change(now) - now, 1e-6)
            )


async def deliver_webhook(
    *,
    prediction: Prediction,
    url: str,
    session: aiohttp.ClientSession,
    clock: Clock,
    scale: float,
    ledger: Ledger,
    final_body: Callable[[Prediction], dict[str, Any]],
) -> None:
    """POST the final status of ``prediction`` to ``url`` once it has ended.

    A non-2xx answer, a refused connection or a timeout is retried after each of
    :data:`RETRY_DELAYS` (scaled); the payload is the status JSON, unsigned.
    """
    await _wait_until_terminal(prediction, clock)
    payload = final_body(prediction)
    timeout = aiohttp.ClientTimeout(total=max(ATTEMPT_TIMEOUT * scale, 1.0))
    for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(
                url, json=payload, timeout=timeout, allow_redirects=False
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ledger.webhooks.append((prediction.id, url, attempt, clock.now(), status, error))
        if status is not None and 200 <= status < 300:
            return
        if delay is not None:
            await asyncio.sleep(delay * scale)
