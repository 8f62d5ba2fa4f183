"""Pacing a restarted job: a fresh process does not know what the last one sent.

The client's submit limiter starts empty in every process. Right after a crash, the
dead run's submissions are still in the API's window, and a full window of new ones
would meet 429s (and sit in ``submitting`` while waiting to re-send). The journal knows
when each row was last sent: the limiter is seeded with those sends
(:func:`seed_submit_window`, through the limiter's own ``seed``: no second window
algorithm here), so new requests wait until they leave the window.

The same holds for the in-flight cap: a row the dead run was sending may have landed
and still be running on the server, unknown to this run. :class:`Predecessors` counts
each one against the cap until the longest a prediction runs has passed since it was
sent. (Rows the dead run saw submitted are polled by this run, which holds an in-flight
slot for each: they need no guess.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from fashn_async._client import AsyncFashn

__all__ = ["Predecessors", "carryover", "predecessor_wait", "seed_submit_window"]


def carryover(sent: Iterable[tuple[float, int]], now: float) -> list[tuple[float, int]]:
    """The history a restart seeds its submit limiter with (``WindowLimiter.seed``):
    ``(age in seconds, generations)`` of each earlier send, from ``(wall-clock time it
    was sent, generations)`` pairs and the wall-clock time ``now``. Sends dated in the
    future (a clock set back) count as sent now; the limiter drops those already out of
    its window."""
    return [(max(0.0, now - when), generations) for when, generations in sent]


def seed_submit_window(client: AsyncFashn, history: Iterable[tuple[float, int]]) -> bool:
    """Seed ``client``'s submit limiter (the one rolling-window limiter of
    :mod:`fashn_async._limits`, whatever its store) with ``history`` (see
    :func:`carryover`); False when the client has no submit limit."""
    # AsyncFashn has no public seam for this yet: the bulk job is the client's own
    # caller stage, and reads its engine's submitter as the client does.
    limiter = client._engine.submitter.limiter
    if limiter is None:
        return False
    limiter.seed(history)
    return True


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
