"""The completion-time estimator of one latency class: interval-censored, learned.

What a poll observes is an interval, never a time: a prediction seen running at ``t1``
and done at ``t2`` ended somewhere in ``(t1, t2]``, and one found done at its first poll
ended anywhere in ``(0, t2]``. :class:`CompletionModel` keeps those intervals and fits
them with Turnbull's self-consistency EM for interval-censored data (as survival
libraries such as lifelines do), on a grid of bins, with a prior mixed in whose weight
fades with every observation. The prior is a mixture (the documented timing and a
broad one, octave by octave): the observations reweight its modes first (EM for the
mixture weights), so that a documented timing they contradict loses its weight within a
few of them and the broad prior keeps only the octaves they fall in. Two departures
from the plain NPMLE, both for planning: a share of each narrow interval is spread
evenly over it (the NPMLE piles mass at the latest point the data allow, which would
make the first poll creep later), and a share of an interval that spans a stretch the
plan skipped is spread over it (the evidence that the stretch is not empty). The fit
is then smoothed by a small triangular kernel. Reading a censored observation as an
exact time teaches the model that completions never come before the first poll; the
fitted intervals cannot.

With ``n`` completions seen, the next one falls below the lowest (above the highest)
with probability ``1 / (n + 1)``, where any fit of the ``n`` puts no mass:
:attr:`CompletionModel.ends` extrapolates past both, and the plan polls out to them.
What first polls find is checked against what the model expected
(:mod:`fashn_async._surprise`), and so is what polls past a gap find. Pure: a refit is a
function of copies (:meth:`CompletionModel.refit_job`), run in a worker thread.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import deque
from collections.abc import Callable

from fashn_async._polling import Modes, Polling
from fashn_async._redact import safe_repr
from fashn_async._shift import MARGIN, Running, Shift
from fashn_async._surprise import Surprise
from fashn_async._turnbull import (
    EPSILON,
    MIN_GAP,
    Fit,
    censored_plainly,
    cumulative,
    dense_region,
    mixed,
    mixture_weights,
    predictive_ends,
    turnbull_fit,
    uniform_mass,
)
from fashn_async._validators import in_range, shorten

__all__ = ["FIRST", "CompletionModel", "done_probability"]

#: Share of completions expected before the first poll's target: few, since each of them
#: is found a whole spacing late or more.
FIRST = 0.01
#: Share of its time over which a completion found done at its first poll is spread.
LEFT_SPAN = 0.125
#: What the prior's own mixture weights are worth, in observations, when the
#: observations reweight its modes (a documented timing the completions contradict
#: loses its weight within a few of them).
PRIOR_COUNT = 0.2


class CompletionModel:
    """The distribution of completion times of one latency class.

    Args:
        polling: The policy (its ``target_lag`` sets the resolution).
        prior: Where completions are expected before any is seen.
        deferred: Leave refits to the owner, who runs :meth:`refit_job` (in a worker
            thread) and :meth:`apply`; otherwise a query refits first when due.
    """

    def __init__(self, polling: Polling, prior: Modes, *, deferred: bool = False) -> None:
        self.polling = polling
        #: Whether refits are left to the owner (:meth:`refit_job`, :meth:`apply`).
        self.deferred = deferred
        self.prior = prior
        self._step = polling.target_lag / 4
        self._edges = [0.0]
        self._extend(max(hi for _, hi, _ in prior))
        # Each mode of the prior on its own (the observations reweight them), and mixed.
        self._modes = [uniform_mass(lo, hi, self._edges) for lo, hi, _ in prior]
        total = sum(w for *_, w in prior)
        self._mode_weights = [w / total for *_, w in prior]
        self._ends: tuple[float, float] | None = None
        self._fit = mixed(self._modes, self._mode_weights)
        self._mass = list(self._fit)
        self._cum = cumulative(self._mass)
        self._coarse = list(self._cum)
        self._weight = polling.prior_weight
        self._next_dense = dense_region(self._coarse, self._edges, MIN_GAP * polling.target_lag)
        self._seen: deque[tuple[int, int]] = deque(maxlen=polling.memory)
        self._at_first_poll: deque[bool] = deque(maxlen=polling.memory)
        self._points: deque[float] = deque(maxlen=polling.memory)
        self._sorted: list[float] = []
        #: The points of completions seen between two polls (not at a first poll), sorted.
        self._bracketed: list[float] = []
        self._stale = 0
        self._first_polls = Surprise()
        self._past_gaps = Surprise()
        self._numbers: deque[int] = deque(maxlen=polling.memory)
        self._shift = Shift()

    @safe_repr
    def __repr__(self) -> str:
        return (
            f"<CompletionModel samples={self.samples} "
            f"likely={self.quantile(EPSILON):.3g}-{self.quantile(1 - EPSILON):.3g}s>"
        )

    @property
    def samples(self) -> int:
        """Finished predictions the model remembers."""
        return len(self._seen)

    def submitted(self, plan: Running) -> int:
        """Number a prediction of this class, in submission order, and follow it (held
        weakly) until it is observed or :meth:`ended`: the shift test reads it."""
        return self._shift.submitted(plan)

    def ended(self, number: int) -> None:
        """Prediction ``number`` ended without completing (failed, canceled)."""
        self._shift.ended(number)

    def observe(
        self, seen_running: float | None, seen_done: float, number: int | None = None
    ) -> None:
        """Learn that one completion lies in ``(seen_running, seen_done]``.

        Args:
            seen_running: Seconds after submission it was last known running, or None
                when the first poll already found it done (then it is ``(0, seen_done]``).
            seen_done: Seconds after submission it was first seen done.
            number: Its number from :meth:`submitted`, if any: one sent before a shift
                (:mod:`fashn_async._shift`) teaches nothing; the newest are tested.

        Raises:
            ValueError: ``seen_done`` not a finite number above 0, ``seen_running`` not
                None or a number from 0 to ``seen_done``, or ``number`` not one
                :meth:`submitted` gave; nothing is learned.
        """
        if not in_range(seen_done, 0.0, open_low=True):
            raise ValueError(f"seen_done must be a finite number > 0, got {shorten(seen_done)}")
        if seen_running is not None and not in_range(seen_running, 0.0, seen_done):
            bound = f"a finite number from 0 to seen_done ({seen_done:g})"
            raise ValueError(f"seen_running must be None or {bound}, got {shorten(seen_running)}")
        if number is not None and self._shift.check(number) < self._shift.since:
            self._shift.ended(number)
            return
        at_first_poll = seen_running is None
        if at_first_poll:
            # Done at the first poll: somewhere in (0, seen_done]. Read as "just before",
            # spread evenly over the last LEFT_SPAN of it (at least one bin): the
            # plain reading piles it where the fit already has mass, just below the
            # first poll (the NPMLE's ratchet: first polls could then never move
            # earlier), or, with no mass there, smears it over the prior.
            span = LEFT_SPAN * seen_done
            seen_running = seen_done - span if span < seen_done else None
        low, high = seen_running or 0.0, seen_done
        self._extend(high)
        first = bisect.bisect_right(self._edges, low) - 1
        last = max(bisect.bisect_left(self._edges, high), first + 1)
        self._seen.append((first, last))
        self._at_first_poll.append(at_first_poll)
        # Where it ended, for the ends: the middle of its last spacing (of the interval if
        # narrower), or the first poll's time if it was found done there: upper ends, as
        # the midpoint of a wide interval (a probe's, say) may lie far below the
        # completion, and the extrapolation below the lowest covers what they miss.
        width = 0.0 if at_first_poll else min(high - low, self.polling.target_lag)
        self._points.append(seen_done - width / 2)
        self._sort()
        self._numbers.append(self._shift.since - 1 if number is None else number)
        self._stale += 1
        if at_first_poll:
            # Done by the first poll: completions may come sooner than believed, and the
            # first polls of the predictions submitted next depend on it: refit now.
            self._stale = max(self._stale, len(self._seen) // 8)
        if number is not None:
            self._shift.completed(number, 0.0 if at_first_poll else low, high)
            since = self._shift.test(MARGIN * self.polling.target_lag)
            if since is not None:
                self._forget(since)

    def _forget(self, since: int) -> None:
        """Forget the completions of predictions numbered below ``since`` (the class
        shifted): they, and what first polls and polls past gaps found, mislead."""
        kept = [k for k, number in enumerate(self._numbers) if number >= since]
        for name in ("_seen", "_at_first_poll", "_points", "_numbers"):
            old = getattr(self, name)
            setattr(self, name, deque((old[k] for k in kept), maxlen=old.maxlen))
        self._sort()
        self._shift.forget(since)
        self._first_polls, self._past_gaps = Surprise(), Surprise()
        self._fit = mixed(self._modes, self._mode_weights)  # start the EM afresh
        self._stale = max(len(self._seen), 1)  # refit now

    def first_poll(self, at: float, *, found_done: bool) -> None:
        """Note what a prediction's first poll, ``at`` seconds after submission, found."""
        self._first_polls.note(found_done, self.cdf(at))

    def past_gap(self, at: float, after: float, *, found_done: bool) -> None:
        """Note what the first poll past a stretch the model holds empty found: sent
        ``at`` seconds after submission, to a prediction last seen running at ``after``."""
        self._past_gaps.note(found_done, done_probability(self, at, after))

    @property
    def surprised(self) -> bool:
        """Whether the last first polls found predictions done far more often than
        expected (:func:`fashn_async._surprise.surprised`): completions come sooner
        than the model believes."""
        return self._first_polls.surprised

    @property
    def gaps_surprised(self) -> bool:
        """Whether the last polls past a stretch held empty found predictions done far
        more often than expected: completions come in that stretch, or in the end of
        the mode before it (a class that became faster, its old mode still in memory)."""
        return self._past_gaps.surprised

    def cdf(self, elapsed: float, *, coarse: bool = False) -> float:
        """Estimated probability of completion within ``elapsed`` seconds of submission.

        ``coarse``: from the estimate smoothed for skipping decisions.
        """
        self._refit()
        edges = self._edges
        if elapsed >= edges[-1]:
            return 1.0
        if not elapsed > 0:  # (NaN too)
            return 0.0
        cum = self._coarse if coarse else self._cum
        j = bisect.bisect_right(edges, elapsed) - 1
        share = (elapsed - edges[j]) / (edges[j + 1] - edges[j])
        return min(cum[j] + (cum[j + 1] - cum[j]) * share, 1.0)

    def quantile(self, p: float, *, coarse: bool = False) -> float:
        """The time by which a share ``p`` of predictions is expected done, seconds."""
        self._refit()
        cum, edges = (self._coarse if coarse else self._cum), self._edges
        last = len(edges) - 2
        j = min(max(bisect.bisect_right(cum, p) - 1, 0), last)
        while j < last and cum[j + 1] <= cum[j]:
            j += 1
        mass = cum[j + 1] - cum[j]
        share = (p - cum[j]) / mass if mass > 0 else 1.0
        return edges[j] + (edges[j + 1] - edges[j]) * min(max(share, 0.0), 1.0)

    @property
    def ends(self) -> tuple[float, float] | None:
        """``(low, high)`` seconds: how early and how late the next completion may come,
        extrapolated past the lowest and the highest seen (``END_REACH`` of their mean
        spacings; past the highest, at least ``HIGH_REACH`` of the range, both in
        :mod:`fashn_async._turnbull`); None before two are seen."""
        return self._ends

    def next_likely(self, after: float) -> float | None:
        """The earliest time from ``after`` on where completions are likely, if any.

        "Likely": inside the densest region holding all but :data:`EPSILON` of the
        completions (of the estimate smoothed for skipping). None past its end.
        """
        self._refit()
        edges = self._edges
        if after >= edges[-1]:
            return None
        j = self._bin(after)
        k = self._next_dense[j]
        if self._ends is not None and k >= 0:
            low = self._ends[0]
            if low < edges[k] and (j == 0 or self._next_dense[0] == k):
                return max(low, after)  # below the lowest seen: the next may come there
        return None if k < 0 else max(edges[k], after)

    def _sort(self) -> None:
        self._sorted = sorted(self._points)
        self._ends = predictive_ends(self._sorted)
        self._bracketed = sorted(
            p for p, first in zip(self._points, self._at_first_poll, strict=True) if not first
        )

    def past_mode(self, after: float, within: float) -> float | None:
        """Where completions are likely again past the stretch of likely ones holding
        ``after`` (seconds since submission, as the result), if it ends within ``within``
        seconds, fewer than :data:`EPSILON` of those still running at ``after`` are
        expected to complete in what is left of it, and none was seen completing there
        (a tail the fit holds thin: a class that became faster, say; a completion found
        at a first poll there was seen only to come before it); None otherwise.

        The tail of a mode before a gap: a poll there would find little done. (The gap's
        own mass is not checked again: the dense region leaves it out only under EPSILON.)
        """
        self._refit()
        edges, dense = self._edges, self._next_dense
        j = self._bin(after)
        if j >= len(dense) or dense[j] != j:
            return None
        while j < len(dense) and dense[j] == j and edges[j] < after + within:
            j += 1
        if j >= len(dense) or dense[j] <= j or edges[j] >= after + within:
            return None
        seen = bisect.bisect_right(self._bracketed, after)
        if seen < len(self._bracketed) and self._bracketed[seen] <= after + within:
            return None
        before = self.cdf(after)
        if self.cdf(edges[j]) - before >= EPSILON * (1.0 - before):
            return None
        return edges[dense[j]]

    def _bin(self, elapsed: float) -> int:
        """The bin holding ``elapsed`` seconds (the first for 0 or less)."""
        return max(bisect.bisect_right(self._edges, elapsed) - 1, 0)

    def remaining(self, after: float) -> float:
        """Share of completions expected after ``after``, 0 below half an observation."""
        left = 1.0 - self.cdf(after)
        return left if left >= 0.5 / (self.samples + self._weight) else 0.0

    # -- the fit -----------------------------------------------------------------------

    def _extend(self, until: float) -> None:
        edges = self._edges
        added = 0
        while edges[-1] < until + self._step:
            edges.append(edges[-1] + max(self._step, 0.01 * edges[-1]))
            added += 1
        if added and hasattr(self, "_mass"):
            for mode in self._modes:
                mode.extend([0.0] * added)
            self._fit.extend([0.0] * added)
            self._mass.extend([0.0] * added)
            self._cum = cumulative(self._mass)
            self._coarse.extend([self._coarse[-1]] * added)
            self._next_dense.extend([-1] * added)

    def _refit(self) -> None:
        """Refit now if enough is new, unless the owner refits (``deferred``)."""
        if self.deferred:
            return
        job = self.refit_job()
        if job is not None:
            self.apply(job())

    def refit_job(self) -> Callable[[], Fit] | None:
        """The refit due, as a call that touches nothing shared, or None if none is due.

        A refit is due after ``n // 8`` new observations (each of the first eight), or
        after one found done at its first poll (completions may come sooner than
        believed, and the first polls of the predictions submitted next depend on it). The
        call is pure (it works on copies): an owner may run it in a worker thread and
        hand the result to :meth:`apply` on the loop, while the model keeps answering
        from its previous fit. It lets go of the GIL between iterations (``let_go``).
        """
        n = len(self._seen)
        if not self._stale or self._stale < n // 8:
            return None
        self._stale = 0
        weight = self.polling.prior_weight * math.exp(-n / (2.5 * self.polling.prior_weight))
        seen = censored_plainly(list(self._seen), list(self._at_first_poll))
        return functools.partial(
            _fit,
            seen,
            list(self._edges),
            [list(mode) for mode in self._modes],
            list(self._mode_weights),
            weight,
            list(self._fit),
            2.5 * self.polling.target_lag,  # bracketed by polls a spacing apart
            MIN_GAP * self.polling.target_lag,
        )

    def apply(self, fit: Fit) -> None:
        """Take a fit made by a :meth:`refit_job` call (bins added since: empty)."""
        added = len(self._edges) - 1 - len(fit.mass)
        self._fit = fit.mass + [0.0] * added
        self._weight = self.polling.prior_weight * math.exp(
            -fit.samples / (2.5 * self.polling.prior_weight)
        )
        self._mass = fit.smoothed + [0.0] * added
        self._cum = fit.cum + [fit.cum[-1]] * added
        self._coarse = fit.coarse + [fit.coarse[-1]] * added
        self._next_dense = fit.next_dense + [-1] * added


def _fit(
    seen: list[tuple[int, int]],
    edges: list[float],
    modes: list[list[float]],
    weights: list[float],
    weight: float,
    start: list[float],
    narrow: float,
    shortest: float,
) -> Fit:
    """One refit: the prior's modes reweighted by what was seen, weighted by ``weight``,
    then :func:`turnbull_fit` (arguments as there; ``modes`` and ``weights``: the prior's
    modes per bin and their weights). Pure."""
    prior = mixed(modes, mixture_weights(modes, weights, seen, PRIOR_COUNT))
    return turnbull_fit(seen, edges, [weight * m for m in prior], weight, start, narrow, shortest)


def done_probability(model: CompletionModel, elapsed: float, last_running: float) -> float:
    """Chance a prediction seen running at ``last_running`` is done at ``elapsed``.

    For ranking pollers when the status budget is scarce; 1.0 past anything expected.
    """
    before = model.cdf(last_running)
    if before >= 1.0 - 1e-9:
        return 1.0
    return max(model.cdf(elapsed) - before, 0.0) / (1.0 - before)
