"""One prediction's polls: when the next is due, from its latency class's model.

Pure policy; the loop that sleeps and calls is :mod:`fashn_async._poller`, the model is
:mod:`fashn_async._survival`.

:class:`PollPlan` plans one prediction's polls: the first poll one spacing after the 1 %
quantile, or after the lowest completion extrapolated from those seen if that is
earlier (:attr:`CompletionModel.ends`; for 30 % of predictions, up to half a spacing
earlier still, so that first polls below the believed start show whether completions
come sooner), then one every spacing while completions are likely, skipping only
stretches the model holds empty and wider than four spacings (a bimodal mix), and the
tail of a mode before such a stretch once fewer than 2 % of the predictions still
running are expected to complete in it and none was seen completing within the next
spacing. Polling goes on at every spacing up to the highest completion extrapolated,
and backs off geometrically past it. While
a class has seen fewer than six completions, the tail of what it believes (its last
10 %) is polled every two spacings: the first predictions of a class whose prior is
wrong (a model slower than documented) would otherwise poll densely through all of it.
``Polling.explore`` of the predictions explore: a first poll one to three spacings
early, and a stretch held empty crossed with a poll every four spacings. While first
polls find predictions done far more often than the model expected of them
(:attr:`CompletionModel.surprised`: completions come sooner than it believes), first
polls more than four spacings after submission land at half their time, so that the
class relearns its low end from finds near it, not by one 12.5 % step per find (and a
prediction that looked early crosses the rest of the stretch below the low end every
two spacings rather than skipping it), and nearer ones a quarter of a spacing earlier.
A young class's (fewer than :data:`YOUNG` completions remembered) first polls far from
submission land early and cross what is left below the low end sparsely: its first
completions may all have come late by chance. While the first polls past a stretch held
empty find predictions done far more often than expected
(:attr:`CompletionModel.gaps_surprised`: completions come in it, or in the end of the
mode before it), no mode's tail is skipped and every prediction crosses such a
stretch as an explorer does. After the first poll, no two polls of a prediction are
further apart than ``Polling.max_interval``, skips included: a stretch the model holds
empty may be one that sampling left empty by chance (a thin tail), and a prediction
ending there would otherwise wait out the whole stretch. (That is the plan; the loop,
:mod:`fashn_async._poller`, gives a poll past it a place ahead in the status budget's
queue, so that a busy budget does not stretch it either.)
"""

from __future__ import annotations

import math
import random

from fashn_async._survival import FIRST, CompletionModel, done_probability
from fashn_async._turnbull import EPSILON, MIN_GAP

__all__ = ["PollPlan"]

#: Predictions of a class before it may back off past everything seen: until then
#: everything beyond is unexplored, and a wide interval there would blur the model.
WARMUP = 12
#: The first poll lands from DITHER to 1 spacing after the first likely completion:
#: first polls spread below it show whether completions come sooner.
DITHER = -0.5
DITHER_SHARE = 0.3
#: Spacing, in spacings, in the tail of the belief (its last LEARNING_TAIL) while a class
#: has seen fewer than WARMUP // 2 completions (the predictions sent first, at most one
#: per slot in progress: their lag is allowed up to 2 s).
LEARNING = 2.0
LEARNING_TAIL = 0.1
#: Where the first poll lands, as a share of its time, while first polls surprise.
SURPRISED = 0.5
#: ... if it lands more than this many spacings after submission. Nearer, it lands
#: SURPRISED_NEAR spacings earlier (not before half a spacing): a near class that became
#: faster (2-4 -> 1-3 s) otherwise relearns its low end only from the finds at its first
#: polls, over some 50 predictions, while half its time would put a poll more on every
#: prediction of a fast class, crowding a busy status budget (half a spacing: shifts
#: are seen sooner still, but a busy budget is crowded too).
SURPRISED_FROM = 4.0
SURPRISED_NEAR = 0.25
#: A class that remembers fewer completions than this (and than ``Polling.memory``,
#: which would keep it young for good) is young: its low end may be learned far too
#: high, its first completions having all come late by chance. A young class's first
#: poll planned more than YOUNG_FROM spacings after submission lands earlier by
#: 1 / sqrt(n + 1) of its time, n the completions remembered (at least one: before any,
#: the prior is all there is), but not before SURPRISED_FROM spacings, and the
#: prediction crosses what is left below the low end with a poll every MIN_GAP spacings.
#: (1 / sqrt(n): how far above its start the lowest of n draws lies, as a share of the
#: spread, for a density that rises gently from its start; 1 / (n + 1) for one that
#: starts sharply, the safer of the two for the lag, the dearer in polls.)
#: Nearer first polls are left: there the poll more costs more than it saves (at 5-11 s,
#: 5-10 % more status calls for a tenth of a second of lag in a few seeds of a hundred).
YOUNG = 24
YOUNG_FROM = 8.0


class PollPlan:
    """One prediction's polls: when the next one is due, and what each one taught.

    Times are seconds since submission. The loop asks :meth:`next_poll`, polls, and
    reports with :meth:`running` or :meth:`done`.

    Args:
        model: Its latency class's model.
        rng: Draws whether the first poll is a probe.
        learn: Whether its completion, and what its first poll finds, teach the model.
    """

    __slots__ = (
        "__weakref__",
        "_dither",
        "_past_gap",
        "_probe",
        "_young",
        "last_running",
        "learn",
        "model",
        "number",
        "polls",
        "previous_gap",
    )

    def __init__(self, model: CompletionModel, rng: random.Random, *, learn: bool = True) -> None:
        self.model = model
        self.learn = learn
        self.polls = 0
        #: When it was last known running (0: at submission, as far as we know).
        self.last_running = 0.0
        self.previous_gap: float | None = None
        self._past_gap = False  # whether the poll planned is the first past a gap
        self._young = False  # whether its first poll was brought forward as its class's young
        #: Its number in its class, in submission order (None if it does not learn).
        self.number = model.submitted(self) if learn else None
        explore = model.polling.explore
        self._probe = 1.0 + 2.0 * rng.random() if explore and rng.random() < explore else 0.0
        dither = rng.random() < DITHER_SHARE
        self._dither = DITHER + (1.0 - DITHER) * rng.random() if dither else 1.0

    def next_poll(self, gap: float) -> float:
        """When to poll next, seconds since submission, at poll spacing ``gap``: after the
        first poll, at most ``Polling.max_interval`` after the last, whatever the model
        holds empty (a stretch it skips may be a gap that sampling left by chance)."""
        due = self._next_poll(gap)
        if self.polls:
            due = min(due, self.last_running + self.model.polling.max_interval)
        return due

    def _next_poll(self, gap: float) -> float:
        model, polling = self.model, self.model.polling
        after = self.last_running
        self._past_gap = False  # (set below only for a skip: a back-off is none)
        likely = model.next_likely(after)
        step = gap
        if model.samples < WARMUP // 2 and model.cdf(after) > 1 - LEARNING_TAIL:
            step = LEARNING * gap  # still learning, in the tail of the belief: sparser
        if likely is None:
            ends = model.ends
            if model.remaining(after) > 0 or (ends is not None and after < ends[1]):
                likely = after  # in the thin tail of what was seen, or just past it
            elif model.samples < WARMUP and after < 3 * model.quantile(1 - EPSILON):
                likely = after  # still learning: keep on
        if likely is None:  # past everything seen: back off
            previous = self.previous_gap if self.previous_gap is not None else gap
            return after + max(previous * polling.backoff, gap)  # (capped by next_poll)
        skip = likely >= after + gap
        # Polled, and still below the low end: what is left of it is crossed, not skipped,
        # when first polls surprise (completions come before the model's low end), and
        # sparsely up to where the first poll would have been when a young class's first
        # poll landed early.
        below = skip and self.polls > 0 and model.cdf(after) < EPSILON
        if below and model.surprised:
            return after + LEARNING * gap
        if below and self._young:
            return min(after + MIN_GAP * gap, likely + gap)
        doubted = model.gaps_surprised  # polls past gaps find too many done
        if not skip and self.polls and not doubted:
            later = model.past_mode(after, gap)
            if later is not None:  # the tail of a mode before a gap: skip it too
                likely, skip = later, True
        due = likely if skip else after + step
        if skip and (self._probe or doubted) and self.polls:
            # An explorer crosses a stretch the model holds empty with a poll every
            # MIN_GAP spacings (the narrowest gap skipped): enough to show whether
            # completions come there, at a fraction of the polls of a dense crossing.
            # So does every prediction while polls past gaps surprise.
            due = min(due, after + MIN_GAP * gap)
        # (A skip from before the first likely completion, a probe's, is no gap's.)
        self._past_gap = skip and self.polls > 0 and model.cdf(after) >= EPSILON
        if self.polls == 0:  # the first poll: one spacing after the first likely completion
            first = model.quantile(FIRST)
            if model.ends is not None:
                first = min(first, model.ends[0])
            first = max(first, after)
            due = max(first + self._dither * gap, gap / 2)
            if self._probe and first > gap:
                due = max(due - self._probe * gap, gap / 2)
            young = 0 < model.samples < min(YOUNG, model.polling.memory)
            self._young = False  # (planned again: as the class is now)
            if model.surprised and due > SURPRISED_FROM * gap:
                due = SURPRISED * due  # first polls find them done: look much earlier
            elif model.surprised:
                due = max(due - SURPRISED_NEAR * gap, gap / 2)  # near: a little earlier
            elif young and due > YOUNG_FROM * gap:
                # A young class's low end may be far too high: land early, then cross.
                self._young = True
                early = due * (1.0 - 1.0 / math.sqrt(model.samples + 1))
                due = max(early, SURPRISED_FROM * gap)
        return due

    def likely_soon(self, elapsed: float) -> bool:
        """Whether completions are likely within ``target_lag`` of ``elapsed`` (seconds
        since submission): the prediction counts towards the status budget's pressure."""
        likely = self.model.next_likely(elapsed)
        return likely is not None and likely <= elapsed + self.model.polling.target_lag

    def overdue_after(self, sent: float) -> float:
        """Seconds since submission past which a poll sent at ``sent`` goes ahead of
        every call in the status budget's queue that is not: ``max_interval``, less a
        spacing, after it was last seen running (room for the budget's pacing and for
        others due at once); a first poll's once it has waited that long past ``sent``
        (a prediction the model gives little chance to, an early first poll's 0, must
        not wait out a busy budget)."""
        polling = self.model.polling
        since = self.last_running if self.polls else sent
        return since + polling.max_interval - polling.target_lag

    def priority(self, elapsed: float) -> float:
        """Chance it is done by ``elapsed``, given it was running at the last poll."""
        return done_probability(self.model, elapsed, self.last_running)

    def running(self, sent: float) -> None:
        """A poll sent at ``sent`` found it still running."""
        self.polls += 1
        if self.polls == 1 and self.learn:
            self.model.first_poll(sent, found_done=False)
        elif self._past_gap and self.learn:
            self.model.past_gap(sent, self.last_running, found_done=False)
        self.previous_gap = sent - self.last_running if self.polls > 1 else None
        self.last_running = max(sent, self.last_running)

    def done(self, answered: float, *, completed: bool) -> None:
        """A poll answered at ``answered`` found it terminal; learn if it completed."""
        self.polls += 1
        if self.polls == 1 and self.learn and completed:  # (a failure is no completion)
            self.model.first_poll(answered, found_done=True)
        elif self._past_gap and self.learn and completed:
            self.model.past_gap(answered, self.last_running, found_done=True)
        if self.learn and completed and answered > 0:  # (a clock that went back: none)
            seen_running = min(self.last_running, answered) if self.polls > 1 else None
            self.model.observe(seen_running, answered, self.number)
        elif self.number is not None:
            self.model.ended(self.number)
