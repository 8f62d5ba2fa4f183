"""The emulator's clock and its rolling-window limits.

Times here are real loop seconds since the emulator started (API seconds multiplied by
``time_scale``); the report divides them back. Reading time only from the running loop
lets tests fast-forward it.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Iterable

__all__ = ["EPSILON", "Clock", "RollingWindow", "format_retry_after", "max_in_window"]

#: Slack for float residue when comparing loop times: 1 ns of loop time.
EPSILON = 1e-9


class Clock:
    """Monotonic seconds since the emulator started, read from the running loop.

    A test harness may swap the loop's clock under a running server (``looptime`` starts
    fake time after the fixtures ran), so the loop time can jump backwards; this clock
    then holds still instead of going back.
    """

    __slots__ = ("_last", "_loop", "_offset")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._offset = loop.time()
        self._last = 0.0

    def now(self) -> float:
        """Return the seconds elapsed since the clock was made, never decreasing."""
        elapsed = self._loop.time() - self._offset
        if elapsed < self._last:
            self._offset -= self._last - elapsed
            return self._last
        self._last = elapsed
        return elapsed


class RollingWindow:
    """At most ``limit`` units in any window of ``period`` seconds, over a log.

    An event admitted at ``t`` stops counting at exactly ``t + period``. Only admitted
    events are logged; a refused request leaves the window untouched.

    Args:
        limit: Units per window, or ``None`` to admit everything (the log is still kept).
        period: Window length in loop seconds.
    """

    __slots__ = ("_active", "_active_total", "history", "limit", "period")

    def __init__(self, limit: int | None, period: float) -> None:
        self.limit = limit
        self.period = period
        self._active: deque[tuple[float, int]] = deque()
        self._active_total = 0
        #: Every admitted event, in order, for the report.
        self.history: list[tuple[float, int]] = []

    def __repr__(self) -> str:
        return (
            f"<RollingWindow limit={self.limit} period={self.period} "
            f"in_window={self._active_total}>"
        )

    def _expire(self, now: float) -> None:
        while self._active and now - self._active[0][0] >= self.period - EPSILON:
            self._active_total -= self._active.popleft()[1]

    def wait(self, now: float, weight: int = 1) -> float:
        """Return the seconds until ``weight`` units fit, 0.0 if they fit now.

        Raises:
            ValueError: ``weight`` exceeds the limit, so it can never fit.
        """
        if self.limit is None:
            return 0.0
        if weight > self.limit:
            raise ValueError(f"{weight} units can never fit a limit of {self.limit}")
        self._expire(now)
        total = self._active_total
        if total + weight <= self.limit:
            return 0.0
        for when, units in self._active:
            total -= units
            if total + weight <= self.limit:
                return max(when + self.period - now, 0.0)
        raise AssertionError("unreachable: an empty window admits any weight <= limit")

    def add(self, now: float, weight: int = 1) -> None:
        """Log ``weight`` units admitted at ``now``."""
        self._expire(now)
        self._active.append((now, weight))
        self._active_total += weight
        self.history.append((now, weight))

    def max_in_window(self) -> int:
        """Return the most units admitted in any window of ``period`` seconds."""
        return max_in_window(self.history, self.period)


def max_in_window(events: Iterable[tuple[float, int]], period: float) -> int:
    """Return the largest total weight of ``events`` within any window of ``period``.

    Windows are half-open, ``(t - period, t]``: an event at ``t`` and one at
    ``t + period`` never share one. Exact over the whole log, not sampled.
    """
    log = sorted(events)
    best = total = start = 0
    for when, units in log:
        total += units
        while when - log[start][0] >= period - EPSILON:
            total -= log[start][1]
            start += 1
        best = max(best, total)
    return best


def format_retry_after(seconds: float) -> str:
    """Format a wait as a ``Retry-After`` value that is never too early.

    Whole seconds (rounded up) from 1 s on; below that a decimal rounded up to the
    hundredth, such as ``"0.35"``: a scaled-down emulator waits less than a second.
    """
    seconds = round(max(seconds, 0.0), 6)
    if seconds >= 1.0:
        return str(math.ceil(seconds))
    hundredths = max(math.ceil(seconds * 100 - EPSILON), 1)
    if hundredths >= 100:
        return "1"
    return f"0.{hundredths:02d}".rstrip("0")
