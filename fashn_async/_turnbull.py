"""Turnbull's self-consistency EM for interval-censored completion times, and the
planning views of its result: pure functions over lists, no state.

:func:`turnbull_fit` fits observed intervals ``(t1, t2]`` on a grid of bins with a fading
prior; :class:`Fit` carries the estimate smoothed for planning and the dense region
(where completions are likely) derived from it. Used by
:class:`fashn_async._survival.CompletionModel`, which keeps the observations; the
poller runs a fit in a worker thread (it lets go of the GIL between iterations).
"""

from __future__ import annotations

import bisect
import operator
from collections import Counter
from itertools import accumulate

import attrs

from fashn_async._sources import let_go

__all__ = [
    "COARSE",
    "CONTRADICTED",
    "END_REACH",
    "END_SAMPLES",
    "HIGH_REACH",
    "EPSILON",
    "MIN_GAP",
    "SMOOTHING",
    "Fit",
    "censored_plainly",
    "cumulative",
    "dense_region",
    "mixed",
    "mixture_weights",
    "predictive_ends",
    "smooth",
    "turnbull_fit",
    "uniform_mass",
]

#: Conditional probability below which a stretch of time is "no completion expected".
EPSILON = 0.02
#: Share of a bracketed observation spread evenly over its interval in the fit.
SPREAD = 0.3
#: Share of a wide interval (one that spans a skipped stretch) spread evenly over it: the
#: evidence that the stretch is not empty, but one such interval must not fill a gap
#: that dozens of observations left empty.
WIDE_SPREAD = 0.3
#: Shortest stretch, in spacings (and at least 15 % of the time it starts at), that may
#: be skipped as empty.
MIN_GAP = 4.0
#: Completions a stretch must have missed, by the density on its sides, to be a gap...
GAP_EVIDENCE = 6.0
#: ... the density on each side read over this share of the stretch's width.
SIDE = 0.5
#: Most EM iterations per refit (warm-started from the previous fit)...
ITERATIONS = 25
#: ... which stops sooner once an iteration moves less than this much probability mass
#: (the L1 distance between two fits; a refit after one new observation usually
#: converges in a few).
TOLERANCE = 1e-4
#: Half-width, in bins, of the triangular kernel that smooths the fit for planning: the
#: NPMLE puts its mass on a few innermost intervals, and a gap between two of them is
#: not a gap in the completions.
SMOOTHING = 2
#: The wider kernel behind the decision to skip a stretch of time: only a gap wider than
#: about 2 x 8 bins (4 s at 5 s, 16 % of the time beyond 24 s) is believed empty.
COARSE = 4

#: Share of the completions seen ending by a first poll that, seen ending before its
#: LEFT_SPAN, make a completion found done there read as censored plainly, ``(0, poll]``.
CONTRADICTED = 0.5
#: Lowest (highest) completions read to extrapolate the next lowest (highest) one...
END_SAMPLES = 5
#: ... that far beyond the lowest (highest) seen, in their mean spacings: with n seen,
#: the next lies beyond the lowest by chance 1 / (n + 1), by about one spacing.
END_REACH = 2.0
#: Past the highest seen, at least this share of the range seen: polls there cost only
#: the predictions that get there (the next record, about 1 in n + 1, or one stuck).
HIGH_REACH = 0.25


def dense_region(
    coarse: list[float],
    edges: list[float],
    shortest: float,
    samples: int = 0,
    fine: list[float] | None = None,
) -> list[int]:
    """For each bin, the first bin at or after it in the densest 1 - EPSILON region.

    Args:
        coarse: Cumulative mass per edge, of the estimate smoothed for skipping.
        edges: The bins' edges, seconds.
        shortest: Shortest hole, seconds, that is a gap (also at least 15 % of its start).
        samples: Observations behind the estimate. A hole is a gap only if, were the
            density on its two sides to go on through it, :data:`GAP_EVIDENCE`
            completions would have landed in it: ``n`` samples of a smooth distribution
            leave empty stretches by chance (the widest about ``range x ln(n) / n``).
        fine: Cumulative mass per edge of a less smoothed estimate. Whether there is a
            gap is read from ``coarse``; where it starts and ends, from ``fine``: a gap
            widens over the bins beside it that ``fine`` leaves out too. The wide kernel
            that keeps sampling noise from making gaps also blurs each mode's edges,
            and every poll in that blur is spent where nothing completes.
    """
    cum = coarse
    size = len(edges) - 1
    dense = _likely(cum, edges)
    sharp = _likely(fine, edges) if fine is not None else None
    # A hole shorter than MIN_GAP spacings is sampling noise, not a gap: poll through it
    # (skipping it would hide the completions that would fill it).
    j = 0
    while j < size:
        if dense[j]:
            j += 1
            continue
        k = j
        while k < size and not dense[k]:
            k += 1
        width = edges[k] - edges[j] if k < size else 0.0
        if (
            k < size
            and j > 0
            and (
                width < max(shortest, 0.15 * edges[j])
                or samples * width * _side_density(cum, edges, j, k, shortest) < GAP_EVIDENCE
            )
        ):
            dense[j:k] = [True] * (k - j)
        elif k < size and j > 0 and sharp is not None:
            while j > 0 and not sharp[j - 1]:
                j -= 1
                dense[j] = False
            while k < size and not sharp[k]:
                dense[k] = False
                k += 1
        j = k
    following = [-1] * size
    nearest = -1
    for j in range(size - 1, -1, -1):
        if dense[j]:
            nearest = j
        following[j] = nearest
    return following


def _likely(cum: list[float], edges: list[float]) -> list[bool]:
    """Per bin, whether it is in the densest region holding all but EPSILON of the mass:
    the sparsest bins (per second) are left out while together they hold under EPSILON."""
    size = len(edges) - 1
    mass = [cum[j + 1] - cum[j] for j in range(size)]
    order = sorted(range(size), key=lambda j: mass[j] / (edges[j + 1] - edges[j]))
    dense = [True] * size
    left_out = 0.0
    for j in order:
        left_out += mass[j]
        if left_out > EPSILON * cum[-1]:
            break
        dense[j] = False
    return dense


def _side_density(cum: list[float], edges: list[float], j: int, k: int, shortest: float) -> float:
    """The lower of the densities (share per second) just before bin ``j`` and from ``k``,
    each read over :data:`SIDE` of the width of the hole ``[j, k)`` (at least ``shortest``
    seconds, at most the width): a narrow mode beside a wide gap is read over itself,
    not diluted by the emptiness past it."""
    width = edges[k] - edges[j]
    width = max(SIDE * width, min(width, shortest))
    before = bisect.bisect_left(edges, edges[j] - width)
    after = min(bisect.bisect_right(edges, edges[k] + width), len(edges) - 1)
    left = (cum[j] - cum[before]) / max(edges[j] - edges[before], 1e-12)
    right = (cum[after] - cum[k]) / max(edges[after] - edges[k], 1e-12)
    return min(left, right) / max(cum[-1], 1e-12)


def smooth(mass: list[float], half_width: int) -> list[float]:
    """``mass`` convolved with a triangular kernel of ``half_width`` bins (an even number).

    Two passes of a centred box of ``half_width + 1`` bins; what falls off the ends is
    given back in proportion, so the total is kept.
    """
    total = sum(mass)
    out = _box(_box(mass, half_width // 2), half_width // 2)
    kept = sum(out)
    return [m * total / kept for m in out] if kept > 0 else list(mass)


def _box(mass: list[float], reach: int) -> list[float]:
    """The mean of each bin's ``2 * reach + 1`` neighbours (zero beyond the ends)."""
    cum = cumulative(mass)
    size = len(mass)
    width = 2 * reach + 1
    return [(cum[min(k + reach + 1, size)] - cum[max(k - reach, 0)]) / width for k in range(size)]


def cumulative(mass: list[float]) -> list[float]:
    return list(accumulate(mass, initial=0.0))


@attrs.frozen
class Fit:
    """A refit's result, per bin (its bins at the time), from ``samples`` observations."""

    #: The EM's estimate: mass per bin.
    mass: list[float]
    #: It smoothed for planning, and its cumulative sum per edge.
    smoothed: list[float]
    cum: list[float]
    #: Cumulative sum per edge of the estimate smoothed for skipping decisions.
    coarse: list[float]
    #: Per bin, the first bin at or after it where completions are likely (-1: none).
    next_dense: list[int]
    samples: int

    @classmethod
    def of(cls, mass: list[float], edges: list[float], shortest: float, samples: int) -> Fit:
        """The planning views of ``mass`` (``shortest``: as for :func:`_dense_region`)."""
        smoothed = smooth(mass, SMOOTHING)
        cum = cumulative(smoothed)
        coarse = cumulative(smooth(smoothed, COARSE))
        following = dense_region(coarse, edges, shortest, samples, cum)
        return cls(mass, smoothed, cum, coarse, following, samples)


def mixture_weights(
    modes: list[list[float]], weights: list[float], seen: list[tuple[int, int]], count: float
) -> list[float]:
    """The weights of a mixture's components given the observed intervals: EM for the
    weights alone (the components fixed), the given ``weights`` worth ``count``
    observations (a posterior mean under a Dirichlet prior).

    Args:
        modes: Each component's mass per bin (each summing to 1).
        weights: Their weights before any observation (summing to 1).
        seen: Observations as bin ranges ``[first, last)``.
        count: What ``weights`` are worth, in observations.
    """
    if len(weights) < 2 or not seen:
        return list(weights)
    cums = [cumulative(mode) for mode in modes]
    counts = Counter(seen)
    current = list(weights)
    for _ in range(ITERATIONS):
        shares = [count * w for w in weights]
        for (first, last), times in counts.items():
            likes = [w * (c[last] - c[first]) for w, c in zip(current, cums, strict=True)]
            total = sum(likes)
            if total > 0:
                for k, like in enumerate(likes):
                    shares[k] += times * like / total
        norm = sum(shares)
        current = [share / norm for share in shares]
        let_go()
    return current


def mixed(modes: list[list[float]], weights: list[float]) -> list[float]:
    """The mixture's mass per bin: ``sum(weight * mode)`` over its components."""
    mass = [0.0] * len(modes[0])
    for weight, mode in zip(weights, modes, strict=True):
        if weight > 0:
            mass = [m + weight * x for m, x in zip(mass, mode, strict=True)]
    return mass


def turnbull_fit(
    seen: list[tuple[int, int]],
    edges: list[float],
    prior: list[float],
    weight: float,
    start: list[float],
    narrow: float,
    shortest: float,
) -> Fit:
    """Self-consistency EM for interval-censored data, with the fading prior.

    Args:
        seen: Observations as bin ranges ``[first, last)``.
        edges: The bins' edges, seconds.
        prior: The prior's mass per bin, already weighted...
        weight: ... by this, what it is worth in observations.
        start: The previous fit (warm start).
        narrow: Widest interval, in seconds, read as bracketed by two polls.
        shortest: Shortest gap in the completions, seconds (:func:`_dense_region`).
    """
    n = len(seen)
    size = len(prior)
    floor = 1e-6 / size  # keeps every bin reachable for the EM
    mass = [m + floor for m in start[:size]]
    bins = [edges[j + 1] - edges[j] for j in range(size)]
    # Each distinct interval once, with how often it was seen, and the share of it
    # spread evenly (constant across iterations).
    intervals = []
    for (first, last), count in Counter(seen).items():
        # A share of each narrowly bracketed observation is spread evenly over its
        # interval rather than all piled where the others are (the NPMLE's habit, which
        # puts the lowest completions as late as the data allow). A wide one ended inside
        # a stretch that was skipped (the poll after a skip lands where completions are
        # likely again): WIDE_SPREAD of it is spread over the stretch, the evidence that
        # the stretch is not empty.
        span = edges[last] - edges[first]
        spread = (SPREAD if span <= narrow else WIDE_SPREAD) if first else 0.0
        intervals.append((first, last, count, spread, count * spread / span))
    norm = 1.0 / (n + weight)
    for _ in range(ITERATIONS):
        # One E and M step in O(intervals + bins): every interval adds, to each bin it
        # covers, its bin's mass times one coefficient plus the bin's width times
        # another; both sums over intervals are kept as difference arrays.
        cum = cumulative(mass)
        by_mass = [0.0] * (size + 1)
        by_width = [0.0] * (size + 1)
        for first, last, count, spread, even in intervals:
            total = cum[last] - cum[first]
            if total <= 0:
                continue
            share = count * (1.0 - spread) / total
            by_mass[first] += share
            by_mass[last] -= share
            by_width[first] += even
            by_width[last] -= even
        # (A sum that ought to be 0 may come out at -1e-17: clamped.)
        previous, mass = (
            mass,
            [
                (p + (m * c if c > 0 else 0.0) + (w * e if e > 0 else 0.0)) * norm
                for p, m, w, c, e in zip(
                    prior, mass, bins, accumulate(by_mass), accumulate(by_width), strict=False
                )
            ],
        )
        if sum(map(abs, map(operator.sub, mass, previous))) < TOLERANCE:
            break
        let_go()
    return Fit.of(mass, edges, shortest, n)


def censored_plainly(
    seen: list[tuple[int, int]], at_first_poll: list[bool]
) -> list[tuple[int, int]]:
    """``seen`` with each completion found done at its first poll read as ``(0, poll]``
    rather than as its last LEFT_SPAN (of _survival), where that reading is contradicted: more
    than CONTRADICTED of the completions seen ending by that poll were seen
    ending before the span (the first poll was late for what came to be known, so the
    fit, not the poll's time, should place it). Pure."""
    uppers = sorted(last for _, last in seen)
    return [
        (0, last)
        if left
        and first > 0
        and bisect.bisect_right(uppers, first) > CONTRADICTED * bisect.bisect_right(uppers, last)
        else (first, last)
        for (first, last), left in zip(seen, at_first_poll, strict=True)
    ]


def predictive_ends(values: list[float]) -> tuple[float, float] | None:
    """(low, high): END_REACH mean spacings beyond the lowest and the highest of
    sorted ``values``, each spacing read from the END_SAMPLES nearest that end."""
    n = len(values)
    if n < 2:
        return None
    k = min(n, END_SAMPLES)
    low = values[0] - END_REACH * (values[k - 1] - values[0]) / (k - 1)
    high = values[-1] + max(
        END_REACH * (values[-1] - values[-k]) / (k - 1), HIGH_REACH * (values[-1] - values[0])
    )
    return max(low, 0.0), high


def uniform_mass(low: float, high: float, edges: list[float]) -> list[float]:
    """Mass per bin (``edges``, seconds) of the uniform distribution on ``[low, high]``
    seconds; all of it in the bin holding ``low`` when the two are equal."""
    width = max(high - low, 1e-12)
    mass = []
    for j in range(len(edges) - 1):
        overlap = min(high, edges[j + 1]) - max(low, edges[j])
        if high == low and edges[j] < low <= edges[j + 1]:
            overlap = width
        mass.append(overlap / width if overlap > 0 else 0.0)
    return mass
