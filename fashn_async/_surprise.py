"""Whether polls find predictions done far more often than the model expected. Pure.

A model that is wrong about when completions come shows it in what polls find: the
first polls of a class that became faster, or the polls just past a stretch the model
holds empty that completions have come to fill, find predictions done that it gave
little chance to. :class:`Surprise` keeps the last :data:`WINDOW` such polls of one kind
and :func:`surprised` judges them: a one-sided binomial test, the expected count and its
variance the sums of the probabilities the model gave.

A class's latency may also shift (a model that became faster or slower after a
deploy): :func:`shift_start` finds where the last :data:`RECENT` completion times stop
looking like those before them (a two-sample Kolmogorov-Smirnov test), and the model
forgets what came before.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Sequence

__all__ = [
    "FINDS",
    "RECENT",
    "SHIFT_LEVEL",
    "SIGMA",
    "WINDOW",
    "Surprise",
    "distance",
    "shift_start",
    "shifted",
    "surprised",
]

#: Polls remembered to judge whether they surprise: at least FINDS found a prediction
#: done, more than expected by SIGMA binomial standard deviations.
WINDOW = 8
FINDS = 2
SIGMA = 2.5
#: Completions that, unlike those before them by a two-sample Kolmogorov-Smirnov test
#: at level SHIFT_LEVEL, show that a class's latency has shifted (a model that became
#: faster or slower: what is remembered from before is no longer its latency).
RECENT = 12
SHIFT_LEVEL = 1e-4


def surprised(polls: Iterable[tuple[bool, float]]) -> bool:
    """Whether polls found predictions done far more often than expected.

    ``polls``: ``(found done, the probability the model gave that)`` per poll (a
    probability outside [0, 1] is clamped into it, NaN read as 0).
    True when at least :data:`FINDS` found it done, more than the expected count by
    :data:`SIGMA` binomial standard deviations. Pure.
    """
    found = expected = variance = 0.0
    for done, given in polls:
        p = min(given, 1.0) if given >= 0.0 else 0.0  # a probability; NaN: none
        found += done
        expected += p
        variance += p * (1.0 - p)
    return found >= FINDS and found > expected + SIGMA * math.sqrt(variance)


class Surprise:
    """The last :data:`WINDOW` polls of one kind, and whether they surprise."""

    __slots__ = ("_polls", "surprised")

    def __init__(self) -> None:
        self._polls: deque[tuple[bool, float]] = deque(maxlen=WINDOW)
        #: What :func:`surprised` says of them.
        self.surprised = False

    def note(self, found_done: bool, expected: float) -> None:
        """Note one poll: whether it found its prediction done, and the probability the
        model gave that."""
        self._polls.append((found_done, expected))
        self.surprised = surprised(self._polls)


def shifted(older: Sequence[float], recent: Sequence[float], resolution: float = 0.0) -> bool:
    """Whether completion times ``recent`` come from another distribution than ``older``.

    The two-sample Kolmogorov-Smirnov statistic (:func:`distance`, blind to moves of up
    to ``resolution`` seconds: the times are read from polls that far apart) over its
    critical value at level :data:`SHIFT_LEVEL` (the asymptotic ``c(a) * sqrt((n + m) /
    (n * m))``, ``c(a) = sqrt(-ln(a / 2) / 2)``); False while either holds fewer than
    :data:`RECENT`. Pure.
    """
    n, m = len(older), len(recent)
    if n < RECENT or m < RECENT:
        return False
    critical = math.sqrt(-math.log(SHIFT_LEVEL / 2) / 2) * math.sqrt((n + m) / (n * m))
    return distance(older, recent, resolution) > critical


def shift_start(times: Sequence[float], resolution: float = 0.0) -> int | None:
    """Where the latency shifted in ``times`` (oldest first), or None if it did not.

    None unless the last :data:`RECENT` are :func:`shifted` from those before them (at
    ``resolution``, seconds); then the index, among the last RECENT, that splits
    ``times`` into the two most unlike parts (the shift is usually seen before RECENT
    times come after it). Pure.
    """
    n = len(times)
    if not shifted(times[: n - RECENT], times[n - RECENT :], resolution):
        return None
    return max(range(n - RECENT, n), key=lambda k: distance(times[:k], times[k:], resolution))


def distance(a: Sequence[float], b: Sequence[float], resolution: float = 0.0) -> float:
    """How far apart the empirical distribution functions ``Fa``, ``Fb`` of ``a`` and
    ``b`` (both non-empty) are, beyond moving either by up to ``resolution``: the
    largest of ``Fb(x - resolution) - Fa(x)`` and ``Fa(x - resolution) - Fb(x)`` over
    all ``x`` (at 0, the Kolmogorov-Smirnov statistic). Each term is largest at a jump
    of its first function. Pure."""
    a, b = sorted(a), sorted(b)
    n, m = len(a), len(b)
    widest = 0.0
    for x in b:
        widest = max(
            widest, (bisect.bisect_right(b, x) / m) - bisect.bisect_right(a, x + resolution) / n
        )
    for x in a:
        widest = max(
            widest, (bisect.bisect_right(a, x) / n) - bisect.bisect_right(b, x + resolution) / m
        )
    return widest
