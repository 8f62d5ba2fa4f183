"""Pacing a restarted job: a fresh process does not know what the last one sent.

The client's submit limiter starts empty in every process. Right after a crash, the
dead run's submissions are still in the API's window, and a full window of new ones
would meet 429s (and sit in ``submitting`` while waiting to re-send). The journal knows
when each row was last sent; new requests are held back until those leave the window.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import anyio

from fashn_async._limits import Limits

__all__ = ["Carryover"]


class Carryover:
    """What earlier runs sent that is still in the submit window.

    Args:
        limits: The client's limits (their submit rate and margin).
        sent: ``(wall-clock time, generations)`` of each earlier send.
    """

    def __init__(self, limits: Limits, sent: Iterable[tuple[float, int]]) -> None:
        self._limit = limits.submit.limit if limits.submit is not None else None
        self._left: list[tuple[float, int]] = []  # (loop time it leaves the window, weight)
        self._admitted = 0
        if limits.submit is not None:
            window = limits.submit.period + limits.margin
            wall, now = time.time(), anyio.current_time()
            self._left = sorted(
                (now + window - (wall - when), weight)
                for when, weight in sent
                if 0 <= wall - when < window
            )

    def __repr__(self) -> str:
        return f"<Carryover {len(self._left)} earlier sends in the window>"

    async def room(self, weight: int) -> None:
        """Wait until a new request of ``weight`` fits beside the earlier sends."""
        while self._left and self._limit is not None:
            now = anyio.current_time()
            self._left = [(until, w) for until, w in self._left if until > now]
            if not self._left:
                break
            if sum(w for _, w in self._left) + self._admitted + weight <= self._limit:
                break
            await anyio.sleep(self._left[0][0] - now)
        self._admitted += weight
