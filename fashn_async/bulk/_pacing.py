"""Pacing a restarted job: a fresh process does not know what the last one sent.

The client's submit limiter starts empty in every process. Right after a crash, the
dead run's submissions are still in the API's window, and a full window of new ones
would meet 429s (and sit in ``submitting`` while waiting to re-send). The journal knows
when each row was last sent; new requests are held back until those leave the window
(:class:`Carryover`).

The same holds for the in-flight cap: a row the dead run was sending may have landed
and still be running on the server, unknown to this run. :class:`Predecessors` counts
each one against the cap until the longest a prediction runs has passed since it was
sent. (Rows the dead run saw submitted are polled by this run, which holds an in-flight
slot for each: they need no guess.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import anyio

from fashn_async._limits import Limits

__all__ = ["Carryover", "Predecessors", "predecessor_wait"]


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


class Predecessors:
    """Predictions an earlier run may have left running, against the in-flight cap.

    Args:
        in_flight: The client's in-flight cap (None: no cap, nothing to wait for).
        sent: Wall-clock times the earlier run sent each such row.
        longest: Seconds a prediction runs at most.
    """

    def __init__(self, in_flight: int | None, sent: Iterable[float], longest: float) -> None:
        wall, now = time.time(), anyio.current_time()
        self._cap = in_flight
        self._until = sorted(
            now + longest - (wall - when) for when in sent if 0 <= wall - when < longest
        )

    def __repr__(self) -> str:
        return f"<Predecessors {len(self._until)} possibly running, cap {self._cap}>"

    def wait(self, running: int, now: float) -> float | None:
        """Seconds to wait before one more prediction (None: send it now), beside
        ``running`` predictions of this run, at loop time ``now``."""
        self._until = [until for until in self._until if until > now]
        return predecessor_wait(self._cap, running, self._until, now)


def predecessor_wait(cap: int | None, running: int, until: list[float], now: float) -> float | None:
    """How long one more prediction must wait (None: not at all): only the earlier
    run's predictions are this function's concern (the client's own cap does the rest).

    Args:
        cap: The in-flight cap, or None.
        running: Predictions of this run counted against it.
        until: Sorted loop times at which each possibly-running earlier prediction is
            surely over.
        now: The loop time.
    """
    alive = [t for t in until if t > now]
    if cap is None or not alive or running + len(alive) + 1 <= cap:
        return None
    return alive[0] - now
