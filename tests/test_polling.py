"""The polling policy, pure: the interval-censored model, the plan of each poll, the classes.

The many-seed simulation drives :class:`PollPlan` and :class:`CompletionModel` exactly as
the loop in ``fashn_async._poller`` does (no copy of the plan): six predictions in flight,
a new one submitted when one is seen done, each poll at the time the plan gives, a wait
longer than ``REPLAN`` spacings planned again part way. Given a status budget it also
grants calls as the client does (:class:`StatusBudget`: paced after a burst, by
priority) and plans at the spacing of the budget's pressure; given a submission window
as well, it sends predictions in the bursts the bench does (25 at the start of each
minute, 6 at a time).
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_async import Limits, ModelRequest, Polling, TryOnRequest, _survival, _turnbull
from fashn_async._plan import YOUNG, PollPlan
from fashn_async._poller import REPLAN
from fashn_async._polling import BROAD, MAX_MEMORY, latency_class, pressure, prior_for, spacing
from fashn_async._survival import FIRST, CompletionModel, done_probability
from fashn_async._turnbull import (
    COARSE,
    EPSILON,
    MIN_GAP,
    SMOOTHING,
    cumulative,
    dense_region,
    smooth,
)
from fashn_async._window import Pacer
from fashn_async.errors import ConfigurationError

Modes = list[tuple[float, float, float]]
#: The client's margin on every window, seconds (``Limits.margin``).
MARGIN = Limits().margin
TRYON = ("tryon-v1.6", "balanced", 1)


def draw(rng: random.Random, modes: Modes) -> float:
    """One latency from a mixture of uniform modes."""
    pick = rng.random() * sum(w for *_, w in modes)
    for low, high, weight in modes:
        if pick < weight:
            return rng.uniform(low, high)
        pick -= weight
    return rng.uniform(*modes[-1][:2])


def needed(latency: float, modes: Modes) -> int:
    """Polls a client knowing the modes needs: one a second through each mode so far."""
    return max(
        sum(max(1, math.ceil(min(latency, hi) - lo)) for lo, hi, _ in modes if lo < latency), 1
    )


class StatusBudget:
    """The client's status budget as :mod:`fashn_async._limits` grants it, on simulated
    time: at most ``limit`` calls per ``period`` + ``margin`` seconds, granted back to back
    up to ``burst`` and then paced by the client's own :class:`Pacer` (``limit`` per
    ``period`` + ``margin``; ``Limits.status_burst``), the calls waiting served by
    priority (the chance their prediction is done), then in arrival order, and one past
    its deadline ahead of every other."""

    def __init__(self, limit: int, period: float, burst: int = 10, margin: float = MARGIN) -> None:
        self.limit, self.window = limit, period + margin
        self.pacer = Pacer(burst, limit / self.window)  # (as WindowLimiter builds it)
        self.sent: collections.deque[float] = collections.deque()
        #: (deadline, -priority, arrival, prediction) of each call waiting.
        self.waiting: list[tuple[float, float, int, int]] = []

    def free_at(self, now: float) -> float:
        """The earliest time from ``now`` on that a call may go."""
        while self.sent and self.sent[0] <= now - self.window:
            self.sent.popleft()
        at = self.sent[0] + self.window if len(self.sent) >= self.limit else now
        return max(at, now + self.pacer.wait(1, now))

    def take(self, now: float) -> int:
        """Grant the call that goes first at ``now``; its prediction."""
        self.pacer.wait(1, now)  # (brings its tokens up to now)
        self.pacer.tokens -= 1
        self.sent.append(now)
        overdue = [w for w in self.waiting if w[0] <= now]
        best = min(overdue) if overdue else min(self.waiting, key=lambda w: w[1:])
        self.waiting.remove(best)
        return best[3]


def simulate(
    modes: Modes,
    seed: int,
    n: int = 60,
    in_flight: int = 6,
    polling: Polling | None = None,
    then: tuple[int, Modes] | None = None,
    budget: tuple[int, float] | None = None,
    submits: tuple[int, float] | None = None,
) -> tuple[list[float], list[int], list[float]]:
    """Run n predictions through the policy: (lags, calls, latencies) in submission order.

    ``then``: ``(k, other)``, the predictions from the k-th on drawn from ``other``.
    ``budget``: ``(calls, seconds)``, a status budget as the API's (50 per 10 s), granted
    as the client's is (:class:`StatusBudget`: paced, by priority). None: every poll is
    sent when due.
    ``submits``: ``(generations, seconds)``, a submission window as the API's (25 per 60
    s, plus the client's 0.25 s margin): a prediction waits for it as well as for a slot
    in progress. None: one is submitted as soon as a slot frees.
    """
    polling = polling or Polling()
    rng = random.Random(seed)
    model = CompletionModel(polling, prior_for(TRYON, polling))
    latencies = [
        draw(rng, then[1] if then is not None and i >= then[0] else modes) for i in range(n)
    ]
    likely: set[int] = set()
    replan = REPLAN * polling.target_lag
    plans: list[PollPlan] = []
    starts: list[float] = []
    lags = [math.nan] * n
    # (when, prediction, what: 0 poll due, 1 only to plan again, 2 the budget may grant,
    # 3 the submission window may take one)
    queue: list[tuple[float, int, int]] = []
    status = StatusBudget(*budget) if budget is not None else None
    arrivals = itertools.count()
    accepted: collections.deque[float] = collections.deque()  # the submission window
    woken = -math.inf  # when the budget's next wake-up is due

    def schedule(i: int, now: float) -> None:
        # As the loop: a wait longer than REPLAN spacings is planned again part way; with
        # a budget, at the spacing of its pressure (the predictions polled where
        # completions are likely, as the loop counts them, against the budget's rate).
        busy = pressure(polling, len(likely), budget[0] / budget[1]) if budget else 1.0
        due = max(starts[i] + plans[i].next_poll(spacing(polling, busy)), now + 1e-6)
        # (The loop's wait is measured after the answer, a little under a crossing's
        # four spacings; here it is exactly that, give or take a rounding.)
        again = due - now > replan + 1e-6
        heapq.heappush(queue, (now + replan, i, 1) if again else (due, i, 0))

    def submit(now: float) -> None:
        if submits is not None:
            window = submits[1] + MARGIN
            while accepted and accepted[0] <= now - window:
                accepted.popleft()
            if len(accepted) >= submits[0]:
                heapq.heappush(queue, (accepted[0] + window + 1e-6, -1, 3))
                return
            accepted.append(now)
        plans.append(PollPlan(model, rng))
        starts.append(now)
        schedule(len(plans) - 1, now)

    def poll(i: int, now: float) -> None:
        plan, elapsed = plans[i], now - starts[i]
        if plan.likely_soon(elapsed):
            likely.add(i)
        else:
            likely.discard(i)
        if elapsed >= latencies[i]:
            likely.discard(i)
            plan.done(elapsed, completed=True)
            lags[i] = elapsed - latencies[i]
            if next(requested) < n:
                submit(now)
        else:
            plan.running(elapsed)
            schedule(i, now)

    requested = itertools.count(min(in_flight, n))  # submissions asked for (sent or waiting)
    for _ in range(min(in_flight, n)):
        submit(0.0)
    while queue:
        now, i, what = heapq.heappop(queue)
        if what == 3:  # the submission window has room again
            submit(now)
            continue
        if what == 1:
            schedule(i, now)
            continue
        if status is None:
            poll(i, now)
            continue
        if what == 0:  # it joins the calls waiting, as the loop's does
            plan = plans[i]
            deadline = starts[i] + plan.overdue_after(now - starts[i])
            priority = plan.priority(now - starts[i])
            status.waiting.append((deadline, -priority, next(arrivals), i))
        while status.waiting:
            at = status.free_at(now)
            if at > now:
                if not now < woken <= at:  # (one wake-up pending at a time)
                    woken = at
                    heapq.heappush(queue, (at, -1, 2))
                break
            poll(status.take(now), now)
    return lags, [plan.polls for plan in plans], latencies


def test_the_simulated_budget_grants_as_the_clients_does() -> None:
    """50 calls per 10 s (+ the 0.25 s margin) asked for at once: 10 back to back (the
    burst), then one every 10.25 / 50 s; the 51st waits for the window's oldest to leave
    it, at 10.25 s (the stall the bench's max_status_in_window of 50 shows). Waiting
    calls go by priority, one past its deadline first."""
    budget = StatusBudget(50, 10.0)
    budget.waiting = [(math.inf, -0.5, k, k) for k in range(60)]
    times: list[float] = []
    now = 0.0
    while len(times) < 51:
        now = budget.free_at(now)
        budget.take(now)
        times.append(now)
    assert times[:10] == [0.0] * 10
    assert times[10] == pytest.approx(10.25 / 50)
    assert times[49] == pytest.approx(40 * 10.25 / 50)
    assert times[50] == pytest.approx(10.25)
    budget = StatusBudget(50, 10.0)
    budget.waiting = [(math.inf, -0.2, 0, 0), (math.inf, -0.9, 1, 1), (3.0, -0.1, 2, 2)]
    assert [budget.take(0.0), budget.take(0.0), budget.take(5.0)] == [1, 0, 2]
    budget.waiting = [(math.inf, -0.2, 3, 3), (3.0, -0.1, 4, 4)]
    assert budget.take(5.0) == 4  # (past its deadline)


def learned(low: float, high: float, n: int, rng: random.Random) -> CompletionModel:
    """A model (explore off) that saw ``n`` completions drawn from ``low``-``high`` s, each
    bracketed by polls a spacing (0.95 s) apart."""
    polling = Polling(explore=0.0)
    model = CompletionModel(polling, prior_for(TRYON, polling))
    for _ in range(n):
        done = rng.uniform(low, high)
        model.observe(done - 0.95, done)
    return model


def p95(values: list[float]) -> float:
    """The 95th percentile by nearest rank below."""
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


DISTRIBUTIONS: dict[str, Modes] = {
    "1-3": [(1.0, 3.0, 1.0)],
    "2-4": [(2.0, 4.0, 1.0)],
    "5-11": [(5.0, 11.0, 1.0)],
    "20-40": [(20.0, 40.0, 1.0)],
    "30-120": [(30.0, 120.0, 1.0)],
    "3-5/25-30": [(3.0, 5.0, 1.0), (25.0, 30.0, 1.0)],
}


@pytest.mark.parametrize("name", ["1-3", "2-4", "5-11", "20-40", "30-120", "3-5/25-30"])
def test_no_seed_misses_the_lag_goal_after_12(name: str) -> None:
    """Over 10 seeds of 60 predictions from the 5-11 s prior: p95 lag <= 1 s after the 12th."""
    modes = DISTRIBUTIONS[name]
    worst = 0.0
    for seed in range(10):
        lags, _, _ = simulate(modes, seed)
        worst = max(worst, p95(lags[12:]))
    assert worst <= 1.0


def test_a_fast_class_meets_the_lag_goal_under_the_status_budget() -> None:
    """1-3 s as the bench runs it: the API's status budget (50 calls per 10 s) granted as
    the client grants it, 25 submissions per 60 s and 6 in progress, 20 seeds of 100. In
    each minute's burst the polls planned ask more than the budget gives, so some wait.
    p95 lag after the 12th <= 1 s in 19 seeds of 20. (A reading of near first-poll finds
    that brought first polls below the class's start, 497358d, met the goal in every seed
    without the budget and missed it here in 17 of 20, as it did in all three bench runs.)"""
    missed = 0
    for seed in range(20):
        lags, _, _ = simulate(
            DISTRIBUTIONS["1-3"], seed, n=100, budget=(50, 10.0), submits=(25, 60.0)
        )
        missed += p95(lags[12:]) > 1.0
    assert missed <= 1


@pytest.mark.parametrize("name", ["1-3", "5-11"])
def test_calls_within_the_goal(name: str) -> None:
    """Status calls per prediction, learning from the wrong prior included, over 10 seeds
    of 100: on average <= 1.25 x what a client knowing the distribution needs + 0.5, and
    no seed past 1.05 x that (at 5-11 s a false alarm of first polls that surprise, see
    the README, costs a few seeds a poll more per prediction for a while)."""
    modes = DISTRIBUTIONS[name]
    ratios = []
    for seed in range(10):
        _, calls, latencies = simulate(modes, seed, n=100)
        need = statistics.mean(needed(x, modes) for x in latencies)
        ratios.append(statistics.mean(calls) / (1.25 * need + 0.5))
    assert statistics.mean(ratios) <= 1.0
    assert max(ratios) <= 1.05


def test_learns_that_completions_come_sooner() -> None:
    """A 5-11 s prior facing 1-3 s completions: the first poll moves below 2 s (no ratchet)."""
    lags, _, _ = simulate([(1.0, 3.0, 1.0)], seed=7, n=40)
    assert p95(lags[12:]) <= 1.0
    model = CompletionModel(Polling(), prior_for(TRYON, Polling()))
    rng = random.Random(7)
    for _ in range(40):
        latency = rng.uniform(1.0, 3.0)
        plan = PollPlan(model, rng)
        while True:
            due = plan.next_poll(0.95)
            if due >= latency:
                plan.done(due, completed=True)
                break
            plan.running(due)
    assert model.quantile(EPSILON) <= 1.3


def test_found_done_at_the_first_poll_is_read_as_just_before_it() -> None:
    """(0, 10] is read as the last 12.5 % of it, spread evenly: a first poll that keeps finding
    predictions done moves earlier (no pile just below it, no smear over the prior)."""
    model = CompletionModel(Polling(), prior_for(TRYON, Polling()))
    for _ in range(20):
        model.observe(None, 10.0)
    # (8.5-10 s, blurred by the planning kernel's half-width of 2 bins, 0.5 s)
    assert 7.5 <= model.quantile(0.01) <= 8.5
    assert model.quantile(0.99) <= 10.6
    assert model.cdf(9.25) == pytest.approx(0.5, abs=0.1)


def test_a_late_first_poll_find_is_read_plainly_once_contradicted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found done at a first poll at 8 s, after ten completions seen at 3-4.5 s: most of
    what ended by 8 s ended before 7 s, so it is read as (0, 8] and the fit places it
    with them, not in 7-8 s (where the LEFT_SPAN reading would put 1 in 11 of the mass)."""

    def fitted(contradicted: float) -> CompletionModel:
        monkeypatch.setattr(_turnbull, "CONTRADICTED", contradicted)
        model = CompletionModel(Polling(), prior_for(TRYON, Polling()))
        for k in range(10):
            model.observe(3.0 + 0.1 * k, 3.6 + 0.1 * k)
        model.observe(None, 8.0)
        model.cdf(0.0)  # refit now, with CONTRADICTED as set
        return model

    plain = fitted(_turnbull.CONTRADICTED)
    assert plain.cdf(8.0) - plain.cdf(6.5) < 0.02
    spanned = fitted(2.0)  # never contradicted: the LEFT_SPAN reading
    assert spanned.cdf(8.0) - spanned.cdf(6.5) > 0.05


def test_a_low_end_learned_too_high_comes_down() -> None:
    """A class that first saw 46-120 s (past its young ones), then meets completions from
    30 s: they are found done at their first poll, and within 10 of them the first poll is
    below 35 s."""
    polling = Polling(explore=0.0)
    model = CompletionModel(polling, prior_for(TRYON, polling))
    rng = random.Random(2)
    for _ in range(YOUNG):
        done = rng.uniform(46.0, 120.0)
        model.observe(done - 0.95, done)  # bracketed by polls a spacing apart
    assert PollPlan(model, rng).next_poll(0.95) >= 38.0
    for _ in range(10):
        latency = rng.uniform(30.0, 46.0)
        plan = PollPlan(model, rng)
        due = plan.next_poll(0.95)
        while due < latency:
            plan.running(due)
            due = plan.next_poll(0.95)
        plan.done(due, completed=True)
    assert model.quantile(0.01) <= 35.0
    assert PollPlan(model, rng).next_poll(0.95) <= 35.0


#: A class that becomes faster: (before, after) the 50th prediction.
SHIFTS: dict[str, tuple[Modes, Modes]] = {
    "20-30 -> 2-4": ([(20.0, 30.0, 1.0)], [(2.0, 4.0, 1.0)]),
    "40-60 -> 20-30": ([(40.0, 60.0, 1.0)], [(20.0, 30.0, 1.0)]),
    "30-60 -> 8-12": ([(30.0, 60.0, 1.0)], [(8.0, 12.0, 1.0)]),
    "2-4 -> 20-30": ([(2.0, 4.0, 1.0)], [(20.0, 30.0, 1.0)]),
}


@pytest.mark.parametrize("name", SHIFTS)
def test_a_class_that_shifts_relearns(name: str) -> None:
    """50 predictions from one distribution, then from another: over 10 seeds, the lag
    goal holds again over predictions 70-110. The class remembers its 200 last
    predictions, the old mode's among them, and the new mode's tail is thin in the fit:
    a prediction running there skipped to the old mode, and its completion, found
    there, was read as the old mode's (9-10 s in 2 seeds of 10 at 40-60 -> 20-30 s;
    15-17 s in 3 at 20-30 -> 2-4 s while the simulation planned each poll once); the
    old mode diluted the chance of completing in the new one's tail until it was skipped
    (7.0 s at 20-30 -> 5-11 s, 18.2 s at 30-60 -> 8-12 s, one seed each). Now the tail
    is polled where completions were seen, and while polls past a gap find too many
    done, and the shift test (:mod:`fashn_async._shift`) forgets the old mode."""
    before, after = SHIFTS[name]
    worst = max(p95(simulate(before, seed, n=110, then=(50, after))[0][70:]) for seed in range(10))
    assert worst <= 1.0


def test_a_class_that_becomes_faster_into_its_old_range_is_seen_soon() -> None:
    """20-30 -> 5-11 s, 10 seeds: within 0.25 s of the lag goal (seed 5: 1.22 s; 7.0 s in
    seed 7 before the shift test: the old mode, remembered, diluted the new one's tail
    until it was skipped). The shift is believed only after three tests in a row (no
    steady class taken for shifted), and seed 5 then relearns its low end too high."""
    before, after = [(20.0, 30.0, 1.0)], [(5.0, 11.0, 1.0)]
    worst = max(p95(simulate(before, seed, n=110, then=(50, after))[0][70:]) for seed in range(10))
    assert worst <= 1.25


NEAR_SHIFTS: dict[str, tuple[Modes, Modes]] = {
    "2-4 -> 1-3": ([(2.0, 4.0, 1.0)], [(1.0, 3.0, 1.0)]),
    "5-11 -> 1-3": ([(5.0, 11.0, 1.0)], [(1.0, 3.0, 1.0)]),
}


@pytest.mark.parametrize("name", NEAR_SHIFTS)
def test_a_class_that_becomes_faster_near_submission_is_seen_soon(name: str) -> None:
    """50 predictions, then 100 of a faster class whose first polls are near submission
    (within SURPRISED_FROM spacings), as the bench runs them (the status budget, 25
    submissions per 60 s), 20 seeds: the lag goal holds over the predictions from the
    12th after the shift on in at least 18. While a surprise left near first polls where
    they were, the class relearned its low end only from the finds at its first polls,
    over some 50 predictions: 100 seeds missed in 29 (2-4 -> 1-3 s) and 21 (5-11 -> 1-3
    s); a surprise now lands them a quarter of a spacing earlier (11 and 8)."""
    before, after = NEAR_SHIFTS[name]
    missed = 0
    for seed in range(20):
        lags, _, _ = simulate(
            before, seed, n=150, then=(50, after), budget=(50, 10.0), submits=(25, 60.0)
        )
        missed += p95(lags[62:]) > 1.0
    assert missed <= 2


def test_a_run_of_late_first_completions_does_not_hold_the_low_end_up() -> None:
    """Seed 36 of the many-seed simulation: its first 20 or so completions all come at
    7.2-11 s (a draw of chance about 4 in 100,000), then faster ones are found done at
    their first poll near 7.9 s. The lag goal after the 12th holds: first polls that
    surprise look earlier, and the predictions already waiting are planned again."""
    lags, _, latencies = simulate(DISTRIBUTIONS["5-11"], seed=36)
    assert min(latencies[:20]) > 7.0  # the case this test is about
    assert p95(lags[12:]) <= 1.0


def test_a_prediction_that_looked_early_crosses_below_the_low_end() -> None:
    """Seed 99 at 30-120 s: the first completions come late, and the low end is learned
    too high; first polls that surprise land at half their time, and those predictions
    went on to skip to the believed low end, 15 s on (p95 lag after the 12th 1.76 s).
    Now they cross what is left below it every two spacings."""
    lags, _, _ = simulate(DISTRIBUTIONS["30-120"], seed=99)
    assert p95(lags[12:]) <= 1.0


def test_a_young_class_s_far_first_poll_lands_early_and_crosses_below_the_low_end() -> None:
    """A 30-120 s class whose first six completions all came at 72-93 s (by chance, about
    one run in 40): its first poll, planned past 60 s, lands at 1 - 1/sqrt(7) of that,
    then one every MIN_GAP spacings below the low end, so a prediction that completes at
    48 s is seen within MIN_GAP spacings, not at the first poll planned (16 s late)."""
    polling = Polling(explore=0.0)
    model = CompletionModel(polling, prior_for(TRYON, polling))
    for done in (72.6, 79.5, 86.0, 93.1, 75.2, 88.4):
        model.observe(done - 0.95, done)
    assert model.ends is not None
    planned = min(model.quantile(FIRST), model.ends[0]) + 0.95
    assert planned > 60.0
    plan = PollPlan(model, random.Random(0))  # (its first poll not dithered)
    polls = [plan.next_poll(0.95)]
    assert polls[0] == pytest.approx(planned * (1 - 1 / math.sqrt(7)), abs=1e-6)
    while polls[-1] < 48.0:
        plan.running(polls[-1])
        polls.append(plan.next_poll(0.95))
    assert {round(b - a, 6) for a, b in itertools.pairwise(polls)} == {MIN_GAP * 0.95}
    assert polls[-1] - 48.0 <= MIN_GAP * 0.95


def test_a_class_past_young_or_a_near_first_poll_is_not_brought_forward() -> None:
    """The first poll lands early only in a young class and only planned more than
    YOUNG_FROM spacings out: nearer (a 5-11 s class) the poll more costs more than it saves,
    and a class that has seen YOUNG completions has its low end from them."""
    rng = random.Random(3)
    for low, high, n, young in (
        (5.0, 11.0, 6, False),
        (30.0, 60.0, YOUNG, False),
        (30.0, 60.0, YOUNG - 1, True),
    ):
        polling = Polling(explore=0.0)
        model = CompletionModel(polling, prior_for(TRYON, polling))
        for _ in range(n):
            done = rng.uniform(low, high)
            model.observe(done - 0.95, done)
        assert model.ends is not None
        planned = min(model.quantile(FIRST), model.ends[0]) + 0.95
        first = PollPlan(model, random.Random(1)).next_poll(0.95)
        assert (first < planned - 1.0) is young, (low, n, first, planned)


def test_a_memory_below_young_does_not_keep_a_class_young() -> None:
    """With ``Polling(memory=10)`` a class never remembers 24 completions: once it
    remembers 10 (its memory full), its first polls are planned as for a class past
    young, not brought forward for good (the third break-it helper: 20-40 s calls 1.12 x
    the goal, every seed over)."""
    polling = Polling(explore=0.0, memory=10)
    model = CompletionModel(polling, prior_for(TRYON, polling))
    rng = random.Random(4)
    for _ in range(30):
        done = rng.uniform(30.0, 60.0)
        model.observe(done - 0.95, done)
    assert model.samples == 10
    assert model.ends is not None
    planned = min(model.quantile(FIRST), model.ends[0]) + 0.95
    assert PollPlan(model, random.Random(0)).next_poll(0.95) == pytest.approx(planned)


#: Seeds of simulate() whose first completions came late by chance (the low end learned
#: far too high): p95 lag after the 12th was 1.1-6.2 s before young classes' first polls
#: landed early.
LATE_STARTS = [
    ("30-120", 161),
    ("30-120", 248),
    ("30-120", 132),
    ("3-5/25-30", 177),
    ("20-40", 260),
    ("20-40", 151),
]


@pytest.mark.parametrize(("name", "seed"), LATE_STARTS)
def test_a_class_whose_first_completions_came_late_is_not_seen_late(name: str, seed: int) -> None:
    """p95 lag <= 1 s after the 12th, though the first completions all came late."""
    lags, _, _ = simulate(DISTRIBUTIONS[name], seed)
    assert p95(lags[12:]) <= 1.0


def _trained(polling: Polling, modes: Modes, rng: random.Random, n: int) -> CompletionModel:
    """A model that planned and saw ``n`` predictions drawn from ``modes``."""
    model = CompletionModel(polling, prior_for(TRYON, polling))
    for _ in range(n):
        latency = draw(rng, modes)
        plan = PollPlan(model, rng)
        while True:
            due = plan.next_poll(0.95)
            if due >= latency:
                plan.done(due, completed=True)
                break
            plan.running(due)
    return model


def _walk(model: CompletionModel, rng: random.Random, until: float) -> list[float]:
    """The polls of a prediction still running at ``until`` seconds (at most 200)."""
    plan = PollPlan(model, rng)
    polls: list[float] = []
    while len(polls) < 200 and (not polls or polls[-1] < until):
        polls.append(plan.next_poll(0.95))
        plan.running(polls[-1])
    return polls


@pytest.mark.parametrize("max_interval", [10.0, 30.0])
def test_skips_an_empty_gap_and_polls_both_modes(max_interval: float) -> None:
    """Bimodal 3-5 / 25-30 s, after learning: no poll between 8 and 23 s with
    max_interval 30 s; with the default 10 s, one, to keep the promise of no longer pause."""
    polling = Polling(explore=0.0, max_interval=max_interval)
    rng = random.Random(3)
    model = _trained(polling, [(3.0, 5.0, 1.0), (25.0, 30.0, 1.0)], rng, 80)
    polls = _walk(model, rng, 30.0)
    in_gap = [t for t in polls if 8.0 < t < 23.0]
    assert len(in_gap) == (0 if max_interval == 30.0 else 1)
    assert len([t for t in polls if 25.0 <= t <= 30.0]) >= 5


@settings(max_examples=25, deadline=None)
@given(
    modes=st.lists(
        st.tuples(st.floats(0.5, 200.0), st.floats(0.0, 100.0), st.floats(0.01, 1.0)).map(
            lambda m: (m[0], m[0] + m[1], m[2])
        ),
        min_size=1,
        max_size=3,
    ),
    max_interval=st.sampled_from([1.0, 5.0, 10.0, 40.0]),
    seed=st.integers(0, 2**16),
)
def test_no_pause_between_two_polls_exceeds_max_interval(
    modes: list[tuple[float, float, float]], max_interval: float, seed: int
) -> None:
    """Whatever a class's completions look like (gaps, thin tails, far modes) and whatever
    the model came to hold empty, two polls of one prediction are never further apart
    than ``Polling.max_interval`` (the first may come later: it waits for completions)."""
    rng = random.Random(seed)
    polling = Polling(max_interval=max_interval)
    model = _trained(polling, modes, rng, 40)
    polls = _walk(model, rng, 1.5 * max(high for _, high, _ in modes))
    assert all(b - a <= max_interval + 1e-9 for a, b in itertools.pairwise(polls))


def _learned_bimodal(seed: int) -> CompletionModel:
    """A model that has seen 80 predictions of 3-5 / 25-30 s, polled by the plan (with
    max_interval 30 s: the gap, about 19 s, is skipped whole)."""
    polling = Polling(explore=0.0, max_interval=30.0)
    return _trained(polling, [(3.0, 5.0, 1.0), (25.0, 30.0, 1.0)], random.Random(seed), 80)


def _polls_until(model: CompletionModel, end: float, *, explore: float) -> list[float]:
    """:func:`_walk` to ``end`` with ``explore`` (max_interval 30 s: gaps skipped whole)."""
    model.polling = Polling(explore=explore, max_interval=30.0)
    return _walk(model, random.Random(1), end)


def test_a_gap_is_skipped_from_the_edges_of_its_modes() -> None:
    """Whether there is a gap is read from the coarse estimate, where it starts and ends
    from the finer one: for 3-5 / 25-30 s the skip runs from 5.25 to 24.75 s, where the
    coarse estimate alone would poll on to 5.75 s and start again at 24.5 s."""
    edges = [0.25 * i for i in range(161)]
    mass = [
        (0.5 / 8 if 3.0 <= edges[j] < 5.0 else 0.0) + (0.5 / 20 if 25.0 <= edges[j] < 30.0 else 0.0)
        for j in range(160)
    ]
    fine = smooth(mass, SMOOTHING)
    coarse = cumulative(smooth(fine, COARSE))
    sharp = dense_region(coarse, edges, 3.8, 100, cumulative(fine))
    blurred = dense_region(coarse, edges, 3.8, 100)

    def next_polled(following: list[int], t: float) -> float:
        return edges[following[edges.index(t)]]

    assert [next_polled(sharp, t) for t in (5.0, 5.25, 6.0, 24.5)] == [5.0, 24.75, 24.75, 24.75]
    assert [next_polled(blurred, t) for t in (5.0, 5.25, 6.0, 24.5)] == [5.0, 5.25, 24.5, 24.5]


@pytest.mark.parametrize("seed", range(3))
def test_an_explorer_crosses_a_gap_sparsely(seed: int) -> None:
    """An exploring prediction crosses a gap with a poll every four spacings (3.8 s), not
    one every spacing: 3 to 5 polls in 7-24 s instead of about 18."""
    polls = _polls_until(_learned_bimodal(seed), 30.0, explore=1.0)
    inside = [t for t in polls if 7.0 < t < 24.0]
    assert 3 <= len(inside) <= 5
    assert all(b - a >= 3.7 for a, b in itertools.pairwise(inside))


def test_stragglers_back_off() -> None:
    """Past everything seen, polls thin out geometrically up to max_interval."""
    polling = Polling(max_interval=10.0, explore=0.0)
    model = CompletionModel(polling, ((5.0, 11.0, 1.0),))
    for k in range(40):
        model.observe(5.0 + k * 0.15, 5.9 + k * 0.15)
    plan = PollPlan(model, random.Random(0))
    polls = 0
    while plan.last_running < 300.0:
        plan.running(plan.next_poll(0.95))
        polls += 1
    assert polls < 60
    assert plan.next_poll(0.95) - plan.last_running <= 10.0


def test_a_prior_the_completions_contradict_loses_its_weight() -> None:
    """tryon-v1.6's documented 5-11 s, then six completions at 22-39 s: first polls are
    planned from past 12 s (the prior's modes reweighted; a fixed mixture kept it near 6
    s)."""
    polling = Polling(explore=0.0)
    model = CompletionModel(polling, prior_for(TRYON, polling))
    assert PollPlan(model, random.Random(0)).next_poll(0.95) < 5.0
    for done in (25.0, 31.0, 36.0, 22.0, 28.0, 39.0):
        model.observe(done - 0.95, done)
    assert model.ends is not None
    planned = min(model.quantile(FIRST), model.ends[0])  # where first polls are planned
    assert 12.0 <= planned <= 22.0  # (a young class's land earlier: see test_a_young_...)


def test_the_first_predictions_poll_the_tail_of_the_belief_sparsely() -> None:
    """While a class has seen fewer than six completions, past the last 10 % of what it
    believes (10.7 s for the 5-11 s prior) polls come every two spacings."""
    polling = Polling(explore=0.0)
    model = CompletionModel(polling, prior_for(TRYON, polling))
    plan = PollPlan(model, random.Random(0))
    polls: list[float] = []
    while plan.last_running < 30.0:
        polls.append(plan.next_poll(0.95))
        plan.running(polls[-1])
    tail = model.quantile(0.9)
    steps = [(a, round(b - a, 6)) for a, b in itertools.pairwise(polls)]
    assert {step for a, step in steps if a < tail} == {0.95}
    assert {step for a, step in steps if a > tail} == {1.9}


def test_polls_go_on_past_the_highest_seen_before_backing_off() -> None:
    """With 40 completions of 5-11 s seen, a prediction still running past the highest is
    polled every spacing out to the extrapolated end (the next record), then backs off."""
    polling = Polling(explore=0.0)
    model = CompletionModel(polling, ((5.0, 11.0, 1.0),))
    rng = random.Random(0)
    for _ in range(40):
        done = rng.uniform(5.0, 11.0)
        model.observe(done - 0.95, done)
    assert model.ends is not None
    high = model.ends[1]
    highest = max(model._points)
    assert high >= highest + 0.25 * (highest - min(model._points))
    plan = PollPlan(model, random.Random(0))
    polls: list[float] = []
    while plan.last_running < 20.0:
        polls.append(plan.next_poll(0.95))
        plan.running(polls[-1])
    dense = [b - a for a, b in itertools.pairwise(polls) if a < high]
    assert len(dense) >= 8
    assert max(dense) == pytest.approx(0.95)
    assert polls[-1] - polls[-2] > 1.5  # then backing off


def test_a_probe_s_wide_interval_does_not_drag_the_low_end() -> None:
    """A probe seen running at 3.2 s and done at 5.1 s (5-11 s class): the interval's middle,
    4.15 s, is no completion time; the low end moves by under a spacing."""
    model = learned(5.0, 11.0, 30, random.Random(0))
    before = PollPlan(model, random.Random(0)).next_poll(0.95)
    model.observe(3.2, 5.1)
    after = PollPlan(model, random.Random(0)).next_poll(0.95)
    assert before - 0.95 < after <= before
    assert after >= 4.5


def test_spare_budget_tightens_the_spacing() -> None:
    """Idle budget: idle_lag (default 0.9 x target_lag); busy: target_lag; between: between."""
    polling = Polling(target_lag=1.0)
    assert spacing(polling, 0.0) == pytest.approx(0.9)
    assert spacing(polling, 1.0) == spacing(polling, 5.0) == 1.0
    assert 0.9 < spacing(polling, 0.5) < 1.0


def test_done_probability_ranks_overdue_first() -> None:
    """An overdue prediction outranks a likely one; a fresh one ranks near zero."""
    model = CompletionModel(Polling(), ((5.0, 11.0, 1.0),))
    fresh = done_probability(model, 2.0, 0.0)
    likely = done_probability(model, 9.0, 8.0)
    overdue = done_probability(model, 40.0, 30.0)
    assert fresh < 0.01
    assert fresh < likely < overdue == 1.0


def test_latency_classes() -> None:
    """Model, mode and num_samples make the class; the flat v1 body has its own."""
    image = "https://example.com/a.jpg"
    fast = ModelRequest(
        model_name="tryon-v1.6",
        inputs={"model_image": image, "garment_image": image, "mode": "performance"},
    )
    default = ModelRequest(
        model_name="tryon-v1.6", inputs={"model_image": image, "garment_image": image}
    )
    maxed = ModelRequest(model_name="tryon-max", inputs={"model_image": image, "num_samples": 2})
    v1 = TryOnRequest(model_image=image, garment_image=image, category="tops", num_samples=3)
    assert latency_class(fast) == ("tryon-v1.6", "performance", 1)
    assert latency_class(default) == ("tryon-v1.6", "balanced", 1)
    assert latency_class(maxed) == ("tryon-max", "", 2)
    assert latency_class(v1) == ("v1", "", 3)


def test_priors_follow_the_notes() -> None:
    """Documented models start near their NOTES.md timing, unknown ones from the broad prior."""
    polling = Polling()

    def median(key: tuple[str, str, int]) -> float:
        return CompletionModel(polling, prior_for(key, polling)).quantile(0.5)

    assert 4.0 <= median(("tryon-v1.6", "performance", 1)) <= 7.0
    assert 7.0 <= median(("tryon-v1.6", "balanced", 1)) <= 9.5
    assert 12.0 <= median(("tryon-v1.6", "quality", 1)) <= 17.0
    assert 50.0 <= median(("tryon-max", "", 1)) <= 90.0
    assert prior_for(("image-to-video", "", 1), polling) == BROAD
    assert prior_for(TRYON, Polling(prior=(1, 2))) == ((1.0, 2.0, 1.0),)
    scaled = prior_for(TRYON, polling.scaled(0.1))
    assert max(hi for _, hi, _ in scaled) == pytest.approx(25.6)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 60.0), st.floats(0.01, 30.0), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_any_observations_give_a_distribution(
    observations: list[tuple[float, float, bool]],
) -> None:
    """Whatever intervals are seen, cdf is a distribution and quantile its inverse."""
    model = CompletionModel(Polling(), BROAD)
    for start, width, censored in observations:
        model.observe(None if censored else start, start + width)
    points = [0.0, 0.5, 1.0, 3.0, 10.0, 30.0, 90.0, 400.0]
    values = [model.cdf(t) for t in points]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values)
    for p in (0.05, 0.5, 0.95):
        assert model.cdf(model.quantile(p)) == pytest.approx(p, abs=1e-6)


TIMES = st.floats(0.001, 1e6)
NOT_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
#: (seen_running, seen_done, the argument blamed): a time not finite, seen_done not above
#: 0, seen_running below 0 or after seen_done.
BAD_OBSERVATIONS = st.one_of(
    st.tuples(st.none() | TIMES, NOT_FINITE | st.floats(max_value=0.0), st.just("seen_done")),
    st.tuples(NOT_FINITE | st.floats(max_value=-1e-300), TIMES, st.just("seen_running")),
    st.builds(lambda done, extra: (done + extra, done, "seen_running"), TIMES, TIMES),
)


@settings(max_examples=100, deadline=None)
@given(BAD_OBSERVATIONS)
def test_a_bad_observation_is_refused_and_learns_nothing(
    bad: tuple[float | None, float, str],
) -> None:
    """A time not finite, negative or reversed raises ValueError naming the argument, and
    the model is left as it was."""
    seen_running, seen_done, blamed = bad
    model = CompletionModel(Polling(), BROAD)
    model.observe(2.0, 3.0)
    model.observe(None, 4.0)
    before = (model.samples, list(model._edges), list(model._seen), model.ends)
    with pytest.raises(ValueError, match=blamed):
        model.observe(seen_running, seen_done)
    assert (model.samples, list(model._edges), list(model._seen), model.ends) == before


@pytest.mark.parametrize(("seen_running", "seen_done"), [(0, 5), (5, 5), (None, 5e-324)])
def test_observations_at_the_bounds_are_learned(
    seen_running: float | None, seen_done: float
) -> None:
    """Seen running at 0 or at the very time it was seen done, or done at the least time
    above 0: each is a completion learned."""
    model = CompletionModel(Polling(), BROAD)
    model.observe(seen_running, seen_done)
    assert model.samples == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prior": (0, 5)}, "prior"),
        ({"prior": (6, 5)}, "prior"),
        ({"prior": [(1, 2, 0)]}, "prior"),
        ({"target_lag": 0}, "target_lag"),
        ({"idle_lag": -1}, "idle_lag"),
        ({"backoff": -1}, "backoff"),
        ({"memory": 0}, "memory"),
        ({"memory": MAX_MEMORY + 1}, "memory"),
        ({"memory": True}, "memory"),
        ({"memory": 200.0}, "memory"),
        ({"explore": 2}, "explore"),
        ({"prior_weight": 0}, "prior_weight"),
        ({"prior": b"ab"}, "prior"),
        ({"prior": [b"abc"]}, "prior"),
        ({"target_lag": 1e-300}, "target_lag"),
        ({"target_lag": 1.0, "idle_lag": 2.0}, "idle_lag"),
        ({"backoff": 0.5}, "backoff"),
        ({"scale": 1e6}, "scale"),
        ({"scale": True}, "scale"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    """A bad Polling setting fails at construction, naming the setting."""
    with pytest.raises(ValueError, match=match):
        Polling(**kwargs)  # type: ignore[arg-type]


def test_memory_is_bounded_for_the_cost_of_a_refit() -> None:
    """``memory`` goes up to MAX_MEMORY (10 000), the limit named when it is exceeded."""
    assert Polling(memory=MAX_MEMORY).memory == MAX_MEMORY == 10_000
    with pytest.raises(ConfigurationError, match="memory must be an integer from 1 to 10000"):
        Polling(memory=10**6)


def test_a_fast_emulator_s_time_scale_is_accepted() -> None:
    """An emulator at time scale 0.001 polls at 0.95 ms: above the 1 us floor."""
    assert Polling().scaled(0.001).target_lag == pytest.approx(0.00095)


@pytest.mark.parametrize("factor", [0, -1, True, math.nan, math.inf, "2", 1e6])
def test_bad_scale_factor(factor: object) -> None:
    """``scaled`` takes a finite number above 0 whose durations stay in range."""
    with pytest.raises(ConfigurationError, match="factor|scale|max_interval|target_lag"):
        Polling().scaled(factor)  # type: ignore[arg-type]


def reference_fit(model: CompletionModel) -> list[float]:
    """Self-consistency EM written the plain way: every interval's bins, one by one."""
    seen = _turnbull.censored_plainly(list(model._seen), list(model._at_first_poll))
    edges = model._edges
    n = len(seen)
    weight = model.polling.prior_weight * math.exp(-n / (2.5 * model.polling.prior_weight))
    # The prior's modes reweighted by the observations: EM for the mixture weights, the
    # prior's own weights worth PRIOR_COUNT observations, one observation at a time.
    modes, weights = model._modes, list(model._mode_weights)
    for _ in range(_turnbull.ITERATIONS):
        shares = [_survival.PRIOR_COUNT * w for w in model._mode_weights]
        for first, last in seen:
            likes = [w * sum(mode[first:last]) for w, mode in zip(weights, modes, strict=True)]
            for k, like in enumerate(likes):
                shares[k] += like / sum(likes) if sum(likes) > 0 else 0.0
        weights = [share / sum(shares) for share in shares]
    prior = [
        weight * sum(w * mode[j] for w, mode in zip(weights, modes, strict=True))
        for j in range(len(modes[0]))
    ]
    size = len(prior)
    mass = [m + 1e-6 / size for m in model._fit]
    narrow = 2.5 * model.polling.target_lag
    for _ in range(_turnbull.ITERATIONS):
        acc = list(prior)
        for first, last in seen:
            total = sum(mass[first:last])
            span = edges[last] - edges[first]
            spread = (
                (_turnbull.SPREAD if span <= narrow else _turnbull.WIDE_SPREAD) if first else 0.0
            )
            for j in range(first, last):
                acc[j] += mass[j] * (1 - spread) / total + spread / span * (edges[j + 1] - edges[j])
        previous, mass = mass, [a / (n + weight) for a in acc]
        if sum(abs(a - b) for a, b in zip(mass, previous, strict=True)) < _turnbull.TOLERANCE:
            break
    return mass


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 60.0), st.floats(0.01, 5.0), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_the_fit_is_the_plain_em(observations: list[tuple[float, float, bool]]) -> None:
    """The fit (difference arrays over distinct intervals) equals EM written bin by bin."""
    model = CompletionModel(Polling(), prior_for(TRYON, Polling()), deferred=True)
    for low, width, found_first in observations:
        model.observe(None if found_first else low, low + width)
    model._stale = len(observations)  # due now, whatever the count
    expected = reference_fit(model)
    job = model.refit_job()
    assert job is not None
    fit = job()
    assert max(abs(a - b) for a, b in zip(fit.mass, expected, strict=True)) < 1e-9


def test_a_deferred_refit_works_on_a_snapshot() -> None:
    """A deferred model never refits when asked; its job reads copies, so observations made
    while it runs (in a worker thread) wait for the next refit, and bins added meanwhile
    are empty in the applied fit."""
    model = CompletionModel(Polling(), prior_for(TRYON, Polling()), deferred=True)
    before = model.quantile(0.5)
    for _ in range(8):
        model.observe(2.0, 3.0)
    assert model.quantile(0.5) == before  # nothing applied yet
    job = model.refit_job()
    assert job is not None
    assert model.refit_job() is None  # one refit per batch of news
    model.observe(300.0, 301.0)  # while the job "runs": extends the bins
    model.apply(job())
    assert 2.0 <= model.quantile(0.5) <= 3.5
    assert model.cdf(299.0) == pytest.approx(1.0)  # the new bins hold nothing yet
    assert model.refit_job() is not None  # the new observation is due next
