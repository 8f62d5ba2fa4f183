"""Whether a latency class has become faster: its newest predictions against those
before them.

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
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "CONFIRM",
    "EVENTS",
    "MARGIN",
    "NEWEST",
    "SUBJECTS",
    "THRESHOLD",
    "Shift",
    "logrank",
    "shifted",
]

#: The newest predictions compared with those before them (at least as many).
NEWEST = 12
#: Standard normal deviates past which the two groups differ: about 3e-7 one-sided by
#: the normal approximation, but a test of 12 has heavier tails, and a class is tested
#: at every completion (the most a steady class reached: 4.3, over 40 seeds of 150).
THRESHOLD = 5.0
#: Completions of the newest observed, at least, for the test to judge.
EVENTS = 6
#: Consecutive completions after each of which the test finds a shift, before it is
#: believed: a real shift goes on showing, a chance run of a few early completions among
#: the newest 12 does not (the normal approximation overstates a handful).
CONFIRM = 3
#: Moves smaller than this many spacings are no shift.
MARGIN = 2.0
#: Predictions compared (the last sent): the test runs on the event loop at every
#: completion, about 0.8 ms for 200 (benchmarks/bench_learning.py), and more says
#: little more of 12.
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
    excess, variance, _ = _compare(older, newer)
    return excess / math.sqrt(variance) if variance > 0 else 0.0


def _compare(older: Sequence[Subject], newer: Sequence[Subject]) -> tuple[float, float, float]:
    """(observed - expected completions of ``newer``, its variance, expected)."""
    times = [sorted(t for t, _ in group) for group in (older, newer)]
    done = [Counter(t for t, completed in group if completed) for group in (older, newer)]
    excess = variance = expected = 0.0
    for t in sorted(done[0].keys() | done[1].keys()):
        at_risk = [len(ts) - bisect.bisect_left(ts, t) for ts in times]
        n = at_risk[0] + at_risk[1]
        d = done[0][t] + done[1][t]
        if n < 2 or not at_risk[0] or not at_risk[1]:
            continue
        share = at_risk[1] / n
        expected += d * share
        excess += done[1][t] - d * share
        variance += d * share * (1.0 - share) * (n - d) / (n - 1)
    return excess, variance, expected


def _deviates(older: Sequence[Subject], newer: Sequence[Subject]) -> float:
    """:func:`logrank`, or 0.0 when fewer than :data:`EVENTS` completions of ``newer``
    were observed: the normal approximation does not hold for a handful (2 observed
    against 0.2 expected reads as 4 deviates)."""
    excess, variance, expected = _compare(older, newer)
    if variance <= 0 or expected + excess < EVENTS:
        return 0.0
    return excess / math.sqrt(variance)


def shifted(older: Sequence[Interval], newer: Sequence[Interval], margin: float) -> bool:
    """Whether ``newer`` completes sooner than ``older`` moved ``margin`` seconds earlier,
    by :data:`THRESHOLD` deviates, with at least :data:`EVENTS` completions of ``newer``
    observed. Pure.

    Each side is read where its intervals favour no shift: ``newer`` by when it was seen
    done, ``older`` by when it was last seen running. Intervals widen with sparse polls (a
    class still learning, a crossing of a gap, a stall of status answers) and narrow with
    dense ones, and neither is a shift. Only sooner: a class that became slower keeps
    what it learned (its old, faster completions cost polls, not lag, and may still come,
    a mode grown rare; forgotten, a rare early mode is relearned only slowly).
    """
    ends = [(high, True) if high is not None else (low, False) for low, high in newer]
    sooner = [(low - margin, high is not None) for low, high in older]
    return _deviates(sooner, ends) > THRESHOLD


class Running(Protocol):
    """A prediction being polled: when it was last known running, seconds."""

    last_running: float


class Shift:
    """One class's predictions by submission: the last :data:`SUBJECTS` sent, those
    running and those completed (by submission, not completion: at many in progress the
    last completions are the slowest of their time).

    A prediction is :meth:`submitted` (its plan, held weakly: one given up on is no
    longer counted), then :meth:`completed` or :meth:`ended` (failed or canceled).
    """

    def __init__(self) -> None:
        self._next = 0
        #: Predictions numbered below were forgotten (a shift).
        self.since = 0
        self._running: weakref.WeakValueDictionary[int, Running] = weakref.WeakValueDictionary()
        self._completed: dict[int, tuple[float, float]] = {}
        self._seen = 0  # consecutive tests that found the newest shifted

    def submitted(self, plan: Running) -> int:
        """Number a new prediction, in submission order."""
        number = self._next
        self._next += 1
        self._running[number] = plan
        return number

    def check(self, number: object) -> int:
        """``number``, if it is one :meth:`submitted` gave.

        Raises:
            ValueError: it is not (not an int, or never given).
        """
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < self._next:
            raise ValueError(
                f"number must be one submitted() gave (an int from 0 to {self._next - 1}), "
                f"got {number!r}"
            )
        return number

    def ended(self, number: int) -> None:
        """The prediction ended without completing: no longer running."""
        self._running.pop(number, None)

    def completed(self, number: int, low: float, high: float) -> None:
        """The prediction completed in ``(low, high]`` seconds after submission."""
        self._running.pop(number, None)
        if number >= self._floor():
            self._completed[number] = (low, high)
        if len(self._completed) > 2 * SUBJECTS:  # now and then, drop those out of it
            floor = self._floor()
            self._completed = {n: done for n, done in self._completed.items() if n >= floor}

    def forget(self, before: int) -> None:
        """Drop the predictions numbered below ``before``."""
        self._seen = 0
        self.since = max(self.since, before)
        self._completed = {n: done for n, done in self._completed.items() if n >= before}

    def _floor(self) -> int:
        return max(self._next - SUBJECTS, self.since)

    def test(self, margin: float) -> int | None:
        """The number of the first of the newest :data:`NEWEST` predictions once they
        differ from those before them (:func:`shifted`, ``margin`` seconds) at
        :data:`CONFIRM` tests in a row, else None."""
        floor = self._floor()
        subjects: list[tuple[int, float, float | None]] = [
            (n, low, high) for n, (low, high) in self._completed.items() if n >= floor
        ]
        subjects += [
            (n, plan.last_running, None)
            for n, plan in list(self._running.items())
            if n >= floor and plan.last_running > 0
        ]
        if len(subjects) < 2 * NEWEST:
            return None
        subjects.sort(key=lambda subject: subject[0])
        older = [(low, high) for _, low, high in subjects[:-NEWEST]]
        newer = [(low, high) for _, low, high in subjects[-NEWEST:]]
        self._seen = self._seen + 1 if shifted(older, newer, margin) else 0
        return subjects[-NEWEST][0] if self._seen >= CONFIRM else None
