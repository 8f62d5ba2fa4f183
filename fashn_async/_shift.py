"""Whether a latency class has shifted: its newest predictions against those before them.

A model that serves a class for hours may see it change: a model made faster, or
slower under load. The estimate (:mod:`fashn_async._survival`) remembers the last few
hundred completions, and a shift leaves it mixing the old with the new: the old
completions dilute every conditional probability the plan reads (the tail of the new
mode, before a stretch the old one left empty, is then skipped as holding little).
:class:`Shift` keeps the predictions of one class in the order they were submitted and
compares the newest :data:`NEWEST` with those before them by the log-rank test, the
survival-analysis test for two groups with right censoring: a prediction still running
counts as known to run at least as long as its last poll found it running. Ordered by
submission, not by completion: within a burst, the predictions that complete first are
the fastest, and the last completions of a steady class are its slowest. The test is
blind to moves within :data:`MARGIN` spacings (what a change of polling grid makes of
the times polls observe); :func:`shifted` judges, pure.
"""

from __future__ import annotations

import bisect
import math
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Protocol

__all__ = ["MARGIN", "NEWEST", "SUBJECTS", "THRESHOLD", "Shift", "logrank", "shifted"]

#: The newest predictions compared with those before them (at least as many).
NEWEST = 12
#: Standard normal deviates past which the two groups differ: about 3e-7 one-sided by
#: the normal approximation, but a test of 12 has heavier tails, and a class is tested
#: at every completion (the most a steady class reached: 4.3, over 40 seeds of 150).
THRESHOLD = 5.0
#: Moves smaller than this many spacings are no shift.
MARGIN = 2.0
#: Most completions compared (the newest): the test runs on the event loop at every
#: completion, about 0.7 ms for 200, and more says little more of 12.
SUBJECTS = 200

#: (seconds since submission, completed): completed then, or last known running then.
Subject = tuple[float, bool]
#: A prediction's (last known running, first seen done or None while running), seconds.
Interval = tuple[float, float | None]


def logrank(older: Sequence[Subject], newer: Sequence[Subject]) -> float:
    """The log-rank statistic of ``newer`` against ``older``: its completions observed
    minus expected, over the standard deviation. Positive: ``newer`` completes sooner.

    A running subject is at risk up to and including its time (it was seen running
    then). 0.0 when nothing can be compared. Pure.
    """
    times = [sorted(t for t, _ in group) for group in (older, newer)]
    done = [Counter(t for t, completed in group if completed) for group in (older, newer)]
    excess = variance = 0.0
    for t in sorted(done[0].keys() | done[1].keys()):
        at_risk = [len(ts) - bisect.bisect_left(ts, t) for ts in times]
        n = at_risk[0] + at_risk[1]
        d = done[0][t] + done[1][t]
        if n < 2 or not at_risk[0] or not at_risk[1]:
            continue
        share = at_risk[1] / n
        excess += done[1][t] - d * share
        variance += d * share * (1.0 - share) * (n - d) / (n - 1)
    return excess / math.sqrt(variance) if variance > 0 else 0.0


def shifted(older: Sequence[Interval], newer: Sequence[Interval], margin: float) -> bool:
    """Whether ``newer`` completes sooner than ``older`` moved ``margin`` seconds earlier,
    or later than it moved ``margin`` later, by :data:`THRESHOLD` deviates. Pure.

    Each side is read where its intervals favour no shift: sooner, ``newer`` by when it
    was seen done against ``older`` by when it was last seen running; later, the other
    way round. Intervals widen with sparse polls (a class still learning, a crossing of
    a gap) and narrow with dense ones, and neither is a shift.
    """
    ends = [(high, True) if high is not None else (low, False) for low, high in newer]
    starts = [(low, high is not None) for low, high in newer]
    sooner = [(low - margin, high is not None) for low, high in older]
    later = [(high + margin, True) if high is not None else (low, False) for low, high in older]
    return logrank(sooner, ends) > THRESHOLD or logrank(later, starts) < -THRESHOLD


class Running(Protocol):
    """A prediction being polled: when it was last known running, seconds."""

    last_running: float


class Shift:
    """One class's predictions by submission: those running, and the last
    :data:`SUBJECTS` completions.

    A prediction is :meth:`submitted` (its plan, held weakly: one given up on is no
    longer counted), then :meth:`completed` or :meth:`ended` (failed or canceled).
    """

    def __init__(self) -> None:
        self._next = 0
        self._running: weakref.WeakValueDictionary[int, Running] = weakref.WeakValueDictionary()
        self._completed: deque[tuple[int, float, float]] = deque(maxlen=SUBJECTS)

    def submitted(self, plan: Running) -> int:
        """Number a new prediction, in submission order."""
        number = self._next
        self._next += 1
        self._running[number] = plan
        return number

    def ended(self, number: int) -> None:
        """The prediction ended without completing: no longer running."""
        self._running.pop(number, None)

    def completed(self, number: int, low: float, high: float) -> None:
        """The prediction completed in ``(low, high]`` seconds after submission."""
        self._running.pop(number, None)
        self._completed.append((number, low, high))

    def forget(self, before: int) -> None:
        """Drop the completions of predictions numbered below ``before``."""
        kept = [done for done in self._completed if done[0] >= before]
        self._completed.clear()
        self._completed.extend(kept)

    def test(self, margin: float) -> int | None:
        """The number of the first of the newest :data:`NEWEST` predictions if they
        differ from those before them (:func:`shifted`, ``margin`` seconds), else None."""
        subjects: list[tuple[int, float, float | None]] = list(self._completed)
        oldest = subjects[0][0] if subjects else self._next
        subjects += _running(self._running.items(), oldest)
        if len(subjects) < 2 * NEWEST:
            return None
        subjects.sort(key=lambda subject: subject[0])
        older = [(low, high) for _, low, high in subjects[:-NEWEST]]
        newer = [(low, high) for _, low, high in subjects[-NEWEST:]]
        return subjects[-NEWEST][0] if shifted(older, newer, margin) else None


def _running(
    plans: Iterable[tuple[int, Running]], oldest: int
) -> list[tuple[int, float, float | None]]:
    """Running predictions seen running past submission, numbered from ``oldest`` on."""
    return [
        (number, plan.last_running, None)
        for number, plan in list(plans)
        if number >= oldest and plan.last_running > 0
    ]
