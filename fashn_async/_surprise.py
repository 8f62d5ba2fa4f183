"""Whether polls find predictions done far more often than the model expected. Pure.

A model that is wrong about when completions come shows it in what polls find: the
first polls of a class that became faster, or the polls just past a stretch the model
holds empty that completions have come to fill, find predictions done that it gave
little chance to. :class:`Surprise` keeps the last :data:`WINDOW` such polls of one kind
and :func:`surprised` judges them: a one-sided binomial test, the expected count and its
variance the sums of the probabilities the model gave.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

__all__ = ["FINDS", "SIGMA", "WINDOW", "Surprise", "surprised"]

#: Polls remembered to judge whether they surprise: at least FINDS found a prediction
#: done, more than expected by SIGMA binomial standard deviations.
WINDOW = 8
FINDS = 2
SIGMA = 2.5


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
