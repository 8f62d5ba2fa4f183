"""The plan's rules at a mode's end, past what a class expects, and after a surprise.

Pure policy, as tests/test_polling.py: a model learned from 3-5 / 25-30 s completions
(``_learned_bimodal``, polled by the plan itself), or a fresh one from a 5-11 s prior.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_polling import TRYON, _learned_bimodal, _polls_until, learned, simulate

from fashn_async import Polling
from fashn_async._plan import SURPRISED, SURPRISED_FROM, SURPRISED_NEAR, WARMUP, PollPlan
from fashn_async._polling import prior_for
from fashn_async._surprise import FINDS, WINDOW, surprised
from fashn_async._survival import CompletionModel
from fashn_async._turnbull import MIN_GAP

GAP = 0.95


@pytest.mark.parametrize("seed", range(6))
def test_the_tail_of_a_mode_before_a_gap_is_skipped(seed: int) -> None:
    """Still running at about 5.7 s of a 3-5 / 25-30 s class: the next poll is where the
    second mode starts, not one more in the first mode's blurred tail (the parent commit
    polled at 6.6 s for seed 2)."""
    polls = _polls_until(_learned_bimodal(seed), 30.0, explore=0.0)
    assert not [t for t in polls if 6.0 <= t <= 23.0]
    first_mode = [t for t in polls if t < 6.0]
    assert 2 <= len(first_mode) <= 3
    assert max(first_mode) >= 5.0  # the first mode ends at 5 s: none of it left unpolled
    assert len([t for t in polls if 24.0 <= t <= 30.0]) >= 5


def test_the_tail_is_polled_while_enough_of_those_running_end_there() -> None:
    """``past_mode`` is None in the thick of a mode, and while more than EPSILON of those
    still running are expected to end in what is left of it."""
    model = _learned_bimodal(0)
    for after in (3.5, 4.0, 4.5, 4.9):
        assert model.past_mode(after, GAP) is None
    later = [model.past_mode(after, GAP) for after in (5.0, 5.1, 5.2, 5.3)]
    assert any(t is not None and 24.0 <= t <= 25.5 for t in later)
    assert model.past_mode(26.0, GAP) is None  # inside the last mode: nothing past it


@pytest.mark.parametrize("seed", range(3))
def test_the_tail_is_polled_where_completions_were_seen(seed: int) -> None:
    """Where ``past_mode`` would skip the rest of a mode, a completion seen within the next
    poll's reach keeps that poll in the mode, whatever the fit says; one seen further on
    does not (a class that became faster keeps its old mode in memory, and the new mode's
    tail is thin in the fit)."""
    model = _learned_bimodal(seed)
    after = next(t for t in (5.0, 5.1, 5.2, 5.3, 5.4) if model.past_mode(t, GAP) is not None)
    model.observe(after + 1.5, after + 2.0)  # past the next poll: the skip stands
    assert model.past_mode(after, GAP) is not None
    model.observe(after, after + 0.5)
    assert model.past_mode(after, GAP) is None


def _spacings_past(model: CompletionModel, start: float, end: float) -> list[float]:
    plan = PollPlan(model, random.Random(3))
    plan.running(start)
    polls = [start]
    while polls[-1] < end:
        polls.append(plan.next_poll(GAP))
        plan.running(polls[-1])
    return [b - a for a, b in itertools.pairwise(polls)]


@pytest.mark.parametrize("seen", [0, 40])
def test_a_prediction_that_never_ends_backs_off_while_learning_too(seen: int) -> None:
    """Still learning (none seen, or ``memory`` under WARMUP so for ever), a prediction
    running past three times the 98 % time backs off to max_interval: it is not polled
    every spacing for ever."""
    polling = Polling(explore=0.0, memory=5)
    model = CompletionModel(polling, prior_for(TRYON, polling))
    for k in range(seen):
        model.observe(5.0 + 0.1 * k, 5.9 + 0.1 * k)
    assert model.samples < WARMUP
    gaps = _spacings_past(model, 12.0, 3600.0)
    assert max(gaps) == pytest.approx(polling.max_interval)
    assert len(gaps) < 700  # every 1.7 s: about 2,100 polls in the hour


def test_once_learned_stragglers_back_off_to_max_interval() -> None:
    """With WARMUP predictions seen, past all of them the spacing grows to max_interval."""
    polling = Polling(explore=0.0)
    model = CompletionModel(polling, ((5.0, 11.0, 1.0),))
    for k in range(WARMUP):
        model.observe(5.0 + 0.5 * k, 5.9 + 0.5 * k)
    gaps = _spacings_past(model, 12.0, 200.0)
    assert max(gaps) == pytest.approx(polling.max_interval)


def test_a_completion_at_its_first_poll_refits_at_once() -> None:
    """A refit is due after n // 8 new observations, or after one found done at its first
    poll: the first polls of the predictions submitted next depend on it."""
    polling = Polling()
    model = CompletionModel(polling, prior_for(TRYON, polling), deferred=True)
    for k in range(40):
        model.observe(5.0 + 0.1 * k, 5.9 + 0.1 * k)
    job = model.refit_job()
    assert job is not None
    model.apply(job())
    model.observe(7.0, 7.9)  # bracketed: 1 new of 41, no refit yet
    assert model.refit_job() is None
    before = model.quantile(0.01)
    model.observe(None, 4.0)  # done at its first poll, 4 s: sooner than believed
    job = model.refit_job()
    assert job is not None
    model.apply(job())
    assert model.quantile(0.01) < before


first_polls = st.lists(st.tuples(st.booleans(), st.floats(0.0, 1.0)), max_size=WINDOW)


@given(first_polls)
def test_surprise_needs_finds_and_grows_with_them(polls: list[tuple[bool, float]]) -> None:
    """Never surprised by fewer than FINDS finds; one more find (the same
    probabilities) never ends a surprise; a find the model was sure of (p = 1) adds none."""
    finds = sum(done for done, _ in polls)
    if finds < FINDS:
        assert not surprised(polls)
    for k, (done, p) in enumerate(polls):
        if not done and surprised(polls):
            assert surprised([*polls[:k], (True, p), *polls[k + 1 :]])
    certain = [(done, 1.0 if done else p) for done, p in polls]
    assert not surprised(certain)


def test_first_polls_found_done_as_often_as_expected_rarely_surprise() -> None:
    """Outcomes drawn from the probabilities the model gave: windows that surprise are
    rare at every level of those probabilities (under 5 % of 2,000; about 4 % at 0.1,
    where three finds in eight are past 2.5 standard deviations)."""
    rng = random.Random(5)
    for level in (0.02, 0.1, 0.33, 0.6):
        hits = 0
        for _ in range(2000):
            polls = []
            for _ in range(WINDOW):
                p = min(max(rng.gauss(level, level / 3), 0.0), 1.0)
                polls.append((rng.random() < p, p))
            hits += surprised(polls)
        assert hits < 100, (level, hits)


def test_first_polls_that_surprise_move_the_next_first_poll_earlier() -> None:
    """A class learned at 20-30 s, its first polls one spacing past the 1 % quantile
    (the model gives each about 10 % of finding it done): three of eight find
    predictions done, and the next prediction's first poll lands at SURPRISED (half) of
    where it would have; eight that find them running end the surprise."""
    rng = random.Random(1)
    model = learned(20.0, 30.0, 30, rng)
    for _ in range(WINDOW):  # first polls that found them running
        plan = PollPlan(model, rng)
        plan.running(plan.next_poll(0.95))
    assert not model.surprised
    usual = [PollPlan(model, random.Random(k)).next_poll(0.95) for k in range(20)]
    assert min(usual) >= 18.0
    for _ in range(3):
        plan = PollPlan(model, rng)
        plan.done(plan.next_poll(0.95), completed=True)
    assert model.surprised
    after = [PollPlan(model, random.Random(k)).next_poll(0.95) for k in range(20)]
    assert all(a <= SURPRISED * u + 1e-9 for a, u in zip(after, usual, strict=True))
    for _ in range(WINDOW):  # then first polls find them running again
        plan = PollPlan(model, rng)
        plan.running(plan.next_poll(0.95))
    assert not model.surprised


def test_failures_and_resumed_predictions_do_not_surprise() -> None:
    """A prediction that failed at its first poll ended, but did not complete: no
    surprise. Nor does one whose submission time is not known (``learn=False``)."""
    polling = Polling(explore=0.0)
    model = CompletionModel(polling, prior_for(TRYON, polling))
    rng = random.Random(4)
    for _ in range(WINDOW):
        PollPlan(model, rng).done(1.0, completed=False)
        PollPlan(model, rng, learn=False).done(1.0, completed=True)
    assert not model.surprised
    for _ in range(FINDS + 1):
        PollPlan(model, rng).done(1.0, completed=True)  # 1 s, from a 5-11 s prior
    assert model.surprised


def test_a_surprise_moves_near_first_polls_a_quarter_spacing_earlier() -> None:
    """A class learned at 2-4 s polls first about 2.7 s after submission, within
    SURPRISED_FROM spacings: a surprise lands each first poll SURPRISED_NEAR (a quarter
    of) a spacing earlier, not at half its time (a poll more per prediction of a fast
    class would crowd a busy status budget), and never before half a spacing."""
    model = learned(2.0, 4.0, 40, random.Random(6))
    usual = [PollPlan(model, random.Random(k)).next_poll(GAP) for k in range(20)]
    assert max(usual) <= SURPRISED_FROM * GAP
    for _ in range(WINDOW):
        model.first_poll(0.5, found_done=True)  # done by 0.5 s: far sooner than believed
    assert model.surprised
    after = [PollPlan(model, random.Random(k)).next_poll(GAP) for k in range(20)]
    assert after == [pytest.approx(max(u - SURPRISED_NEAR * GAP, GAP / 2)) for u in usual]


def test_surprise_reads_any_number_as_a_probability() -> None:
    """Out of [0, 1] is clamped, NaN is none: never a math error from the poll loop."""
    assert surprised([(True, 2.0), (True, 1.0)]) is False  # both certain: none unexpected
    assert surprised([(True, -0.5), (True, float("nan")), (False, float("inf"))]) is True


def _running_past_the_first_mode(model: CompletionModel) -> tuple[PollPlan, float]:
    """A plan (explore off) still running where its next poll skips to the second mode."""
    plan = PollPlan(model, random.Random(2))
    due = plan.next_poll(GAP)
    while due < 20.0:
        sent = due
        plan.running(sent)
        due = plan.next_poll(GAP)
    return plan, sent


def test_polls_past_a_gap_that_surprise_poll_the_tail_and_cross_the_gap() -> None:
    """A 3-5 / 25-30 s class: a prediction still running near the first mode's end skips
    to the second. Once polls past the gap find predictions done that the model gave
    little chance to (completions have come to the gap, or the first mode's tail), the
    tail is polled and the gap crossed with a poll every MIN_GAP spacings; polls past it
    that find them running again end that."""
    model = _learned_bimodal(0)
    model.polling = Polling(explore=0.0, max_interval=30.0)
    after = next(t for t in (5.0, 5.1, 5.2, 5.3, 5.4) if model.past_mode(t, GAP) is not None)
    in_tail = PollPlan(model, random.Random(2))
    in_tail.running(after)
    plan, sent = _running_past_the_first_mode(model)
    assert in_tail.next_poll(GAP) >= 23.0
    assert plan.next_poll(GAP) >= 23.0
    assert not model.gaps_surprised
    for _ in range(FINDS):
        model.past_gap(24.5, sent, found_done=True)
    assert model.gaps_surprised
    assert in_tail.next_poll(GAP) <= after + GAP + 1e-9  # the tail
    polls = [sent]
    while polls[-1] < 23.0:
        polls.append(plan.next_poll(GAP))
        plan.running(polls[-1])
    assert max(b - a for a, b in itertools.pairwise(polls)) <= MIN_GAP * GAP + 1e-9
    for _ in range(WINDOW):
        model.past_gap(24.5, sent, found_done=False)
    assert not model.gaps_surprised


def test_polls_past_a_gap_count_only_completions_of_known_submissions() -> None:
    """The plan notes what its first poll past a gap found: a failure there, or a
    prediction whose submission time is not known (``learn=False``), does not count;
    FINDS completions do."""
    model = _learned_bimodal(1)
    model.polling = Polling(explore=0.0)
    for learn, completed in [(True, False), (False, True)] * WINDOW:
        plan, _ = _running_past_the_first_mode(model)
        plan.learn = learn
        plan.done(plan.next_poll(GAP), completed=completed)
    assert not model.gaps_surprised
    for _ in range(FINDS):
        plan, _ = _running_past_the_first_mode(model)
        plan.done(plan.next_poll(GAP), completed=True)
    assert model.gaps_surprised


def test_polls_past_a_gap_rarely_surprise_a_class_that_keeps_its_modes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """3-5 / 25-30 s throughout, 10 seeds of 100: under 5 % of the polls past the gap
    leave the class surprised."""
    states: list[bool] = []
    note = CompletionModel.past_gap

    def noted(self: CompletionModel, at: float, after: float, *, found_done: bool) -> None:
        note(self, at, after, found_done=found_done)
        states.append(self.gaps_surprised)

    monkeypatch.setattr(CompletionModel, "past_gap", noted)
    for seed in range(10):
        simulate([(3.0, 5.0, 1.0), (25.0, 30.0, 1.0)], seed, n=100)
    assert len(states) > 300
    assert sum(states) < 0.05 * len(states)


@pytest.mark.parametrize("answered", [0.0, -1.0])
def test_a_completion_at_or_before_submission_teaches_nothing(answered: float) -> None:
    """A status answer timed at or before submission (a clock that went back) is no
    completion time: the model learns nothing, and the prediction no longer counts as
    running."""
    polling = Polling()
    model = CompletionModel(polling, prior_for(TRYON, polling))
    plan = PollPlan(model, random.Random(0))
    plan.done(answered, completed=True)
    assert model.samples == 0
    assert plan.number not in model._shift._running


def test_a_completion_answered_before_the_last_running_poll_is_learned() -> None:
    """Answers can be timed out of order (the last 'running' sent later than the 'done'
    answer was timed): the interval is clamped, not refused."""
    polling = Polling()
    model = CompletionModel(polling, prior_for(TRYON, polling))
    plan = PollPlan(model, random.Random(0))
    plan.running(5.0)
    plan.done(4.5, completed=True)
    assert model.samples == 1


def test_a_first_poll_find_in_a_tail_does_not_keep_polling_it() -> None:
    """A completion found done at a first poll within the next poll's reach was seen only
    to come before it: the tail of the mode is skipped still (one bracketed there is not,
    as ``test_the_tail_is_polled_where_completions_were_seen`` checks)."""
    model = _learned_bimodal(0)
    after = next(t for t in (5.0, 5.1, 5.2, 5.3, 5.4) if model.past_mode(t, GAP) is not None)
    model.observe(None, after + 0.5)
    assert model.past_mode(after, GAP) is not None
