"""Pacing a restarted job: a fresh process does not know what the last one sent.

The client's submit limiter starts empty in every process. Right after a crash, the
dead run's submissions are still in the API's window, and a full window of new ones
would meet 429s (and sit in ``submitting`` while waiting to re-send). The journal knows
when each row was last sent: the limiter is seeded with those sends
(:func:`seed_submit_window`, through the limiter's own ``seed``: no second window
algorithm here), so new requests wait until they leave the window.

Each send is dated as the live limiter dates it (:func:`counted_by`): when the server may
have counted it, never earlier. The journal writes a send before its POST goes out (an
fsync, a body's upload, a slow server may come between), so a send is dated by its
answer, and one with no answer recorded (the run died, or was stopped, mid-POST) by the
latest the server could act on it, the client's ``timeout`` after it went out: a server
slow to act may count it, and start its prediction, after the restart
(:func:`counted_at`).

The same holds for the in-flight cap: a row the dead run was sending may have landed
and still be running on the server, unknown to this run. :func:`hold_for_predecessors`
counts each one against the cap, in the client's one in-flight owner (``InFlight``),
until the longest a prediction runs has passed since it was sent. (Rows the dead run
saw submitted are polled by this run, which holds an in-flight slot for each: they need
no guess.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from fashn_async._client import AsyncFashn

__all__ = ["carryover", "counted_at", "hold_for_predecessors", "seed_submit_window"]


def counted_at(sent: float, answered: float | None, timeout: float) -> float:
    """When the server may have counted a POST the journal dated ``sent``: its answer's
    time ``answered`` (the server counts a request before answering it); with none
    recorded, as late as the request may have lasted (``timeout`` seconds: a server slow
    to act counts it when it acts, the client gone or not). Wall-clock seconds; never
    before ``sent``; it may be after now."""
    if answered is not None:
        return max(answered, sent)
    return sent + timeout


def carryover(
    sent: Iterable[tuple[float, int]], now: float, ahead: float = 0.0
) -> list[tuple[float, int]]:
    """The history a restart seeds its submit limiter with (``WindowLimiter.seed``):
    ``(age in seconds, generations)`` of each earlier send, from ``(wall-clock time it
    may be counted, generations)`` pairs and the wall-clock time ``now``. A send may be
    dated up to ``ahead`` seconds after now (a negative age: not answered, and maybe
    counted later still); one dated further ahead (a clock set back) counts as dated
    ``ahead``. The limiter drops those already out of its window."""
    return [(max(-ahead, now - when), generations) for when, generations in sent]


async def hold_for_predecessors(
    client: AsyncFashn, sent: Iterable[float], longest: float
) -> tuple[int, float]:
    """Count an earlier run's possibly-running predictions against ``client``'s in-flight
    cap (its one owner, ``InFlight``): each that the server may have started at wall-clock
    time ``sent`` (:func:`counted_at`) holds a slot until ``longest`` seconds after it.
    Returns how many are held, and for how long at most (seconds from now)."""
    cap = client.limits.in_flight
    if cap is None:
        return 0, 0.0
    wall, now = time.time(), anyio.current_time()
    # (``when`` may be ahead: a POST the server may still act on; it holds longer.)
    until = sorted(now + longest - (wall - when) for when in sent if wall - when < longest)
    # The server runs at most ``cap`` of them at once: hold the last to end (which never
    # waits, at start-up every slot is free).
    # AsyncFashn has no public seam for this: the bulk job is the client's own caller
    # stage, and reaches its engine's one in-flight owner as the client does.
    held = await client._engine.in_flight.hold_until(until[-cap:])
    return held, (until[-1] - now if held else 0.0)


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
