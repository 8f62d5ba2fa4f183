"""The adaptive poller's policy, simulated without I/O: what it learns and what it costs."""

from __future__ import annotations

import random
import statistics

import pytest

from fashn_async import Polling
from fashn_async._polling import CompletionModel, done_probability, next_poll_delay


def simulate(model: CompletionModel, latency: float) -> tuple[int, float]:
    """Poll one prediction of the given latency as the engine does: (calls, lag)."""
    now, calls = 0.0, 0
    seen_running: float | None = None
    since_last: float | None = None
    while True:
        now += next_poll_delay(model, now, since_last)
        calls += 1
        if now >= latency:
            model.observe(seen_running, now)
            return calls, now - latency
        since_last = now - (seen_running or 0.0)
        seen_running = now


def run(model: CompletionModel, latencies: list[float]) -> tuple[float, float]:
    """Mean calls and p95 lag over the given predictions."""
    outcomes = [simulate(model, latency) for latency in latencies]
    lags = sorted(lag for _, lag in outcomes)
    return statistics.mean(c for c, _ in outcomes), lags[int(0.95 * (len(lags) - 1))]


def test_meets_the_goal_at_tryon_latencies() -> None:
    """5-11 s: at most 4 calls per prediction and p95 lag <= 1 s, batch after batch."""
    rng = random.Random(1)
    model = CompletionModel(Polling())
    for _ in range(5):  # five batches of 400: the learned model must not drift
        calls, p95 = run(model, [rng.uniform(5.0, 11.0) for _ in range(400)])
        assert calls <= 4.0
        assert p95 <= 1.0


def test_first_poll_does_not_drift_later() -> None:
    """Predictions found done at the first poll must not push the first poll later."""
    rng = random.Random(2)
    model = CompletionModel(Polling())
    run(model, [rng.uniform(5.0, 11.0) for _ in range(2000)])
    low, high = model.likely_range()
    assert 4.9 <= low <= 5.3
    assert 10.3 <= high <= 11.2


def test_learns_a_slower_model() -> None:
    """20-30 s completions: after learning, no poll is wasted in the prior's 5-11 s."""
    rng = random.Random(3)
    model = CompletionModel(Polling())
    first_calls, _ = run(model, [rng.uniform(20.0, 30.0) for _ in range(20)])
    calls, p95 = run(model, [rng.uniform(20.0, 30.0) for _ in range(200)])
    assert calls < first_calls
    assert p95 <= 1.0
    assert 19.5 <= model.likely_range()[0] <= 21.0


def test_stragglers_back_off() -> None:
    """A prediction far beyond anything seen is polled ever more rarely, up to a cap."""
    model = CompletionModel(Polling(max_interval=10.0))
    calls, lag = simulate(model, 300.0)
    assert calls < 50
    assert lag <= 10.0


def test_done_probability_ranks_overdue_first() -> None:
    """An overdue prediction outranks one barely started; a fresh one ranks near zero."""
    model = CompletionModel(Polling())
    fresh = done_probability(model, 2.0, 0.0)
    likely = done_probability(model, 9.0, 8.0)
    overdue = done_probability(model, 40.0, 30.0)
    assert fresh == 0.0
    assert 0.0 < likely < overdue == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prior": (0, 5)}, "prior"),
        ({"prior": (6, 5)}, "prior"),
        ({"target_lag": 0}, "target_lag"),
        ({"backoff": -1}, "backoff"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    """A bad Polling setting fails at construction, naming the setting."""
    with pytest.raises(ValueError, match=match):
        Polling(**kwargs)  # type: ignore[arg-type]
