"""The benchmarks' pure helpers, on small hand-made inputs, so they cannot silently rot.

The scripts in benchmarks/ import each other as top-level modules (they run as
``python benchmarks/bench_x.py``), so the modules are loaded here from their files.
"""

from __future__ import annotations

import importlib.util
import io
import math
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fashn_async.testing import EmulatorConfig, Latency, WindowLimit

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


an = _load("_analysis")
harness = _load("_harness")
launcher = _load("_emulator_proc")


def test_percentile_interpolates_between_ranks() -> None:
    """Percentiles interpolate linearly; the ends are the min and max; empty is NaN."""
    assert an.percentile([4, 1, 3, 2], 50) == 2.5
    assert an.percentile([4, 1, 3, 2], 0) == 1
    assert an.percentile([4, 1, 3, 2], 100) == 4
    assert an.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 95) == pytest.approx(10.5)
    assert an.percentile([7.0], 95) == 7.0
    assert math.isnan(an.percentile([], 50))
    with pytest.raises(ValueError, match="q must be"):
        an.percentile([1], 101)


def test_formula_time_counts_whole_windows_before_the_last_group() -> None:
    """floor((N-1)/R)*W + latency: N=R is one window, N=R+1 two, N=1000 at 25/60 is 39."""
    assert an.formula_time(1, 25, 60, 9.0) == 9.0
    assert an.formula_time(25, 25, 60, 9.0) == 9.0
    assert an.formula_time(26, 25, 60, 9.0) == 69.0
    assert an.formula_time(1000, 25, 60, 10.0) == 39 * 60 + 10.0
    assert an.last_group_latency([1, 9, 2, 3, 4], 2) == 4
    assert an.last_group_latency([1, 9, 2, 3], 2) == 3


def test_optimal_schedule_window_only_sends_groups_one_window_apart() -> None:
    """Without a cap, groups of R go at 0, W, 2W... and the end is the last group's max."""
    latencies = [5.0, 11.0, 7.0, 6.0, 8.0]
    starts = an.optimal_schedule(latencies, limit=2, period=60.0, in_flight=None)
    assert starts == [0.0, 0.0, 60.0, 60.0, 120.0]
    assert an.makespan(starts, latencies) == 128.0
    assert an.makespan(starts, latencies) == an.formula_time(
        5, 2, 60.0, an.last_group_latency(latencies, 2)
    )


def test_optimal_schedule_waits_for_a_free_slot() -> None:
    """With a cap, the next one goes when the earliest running one ends (slot free at t)."""
    latencies = [5.0, 3.0, 4.0, 1.0]
    starts = an.optimal_schedule(latencies, limit=10, period=60.0, in_flight=2)
    assert starts == [0.0, 0.0, 3.0, 5.0]
    assert an.makespan(starts, latencies) == 7.0
    both = an.optimal_schedule([1.0, 1.0, 1.0], limit=2, period=10.0, in_flight=1)
    assert both == [0.0, 1.0, 10.0]


def test_optimal_schedule_never_breaks_its_constraints() -> None:
    """On random latencies the schedule is ordered, within the window and within the cap."""
    rng = random.Random(5)
    for _ in range(50):
        latencies = [rng.uniform(5, 11) for _ in range(rng.randint(1, 80))]
        limit, cap = rng.randint(1, 25), rng.choice([None, 1, 3, 6])
        starts = an.optimal_schedule(latencies, limit=limit, period=60.0, in_flight=cap)
        assert starts == sorted(starts)
        assert an.max_in_window(starts, 60.0) <= limit
        if cap is not None:
            spans = list(zip(starts, latencies, strict=True))
            for t in starts:
                assert sum(1 for s, lat in spans if s <= t < s + lat) <= cap


def test_max_in_window_is_half_open() -> None:
    """An event at t and one at t + W never share a window."""
    assert an.max_in_window([0.0, 59.9, 60.0], 60.0) == 2
    assert an.max_in_window([0.0, 0.0, 30.0, 59.0], 60.0) == 4
    assert an.max_in_window([], 60.0) == 0


def test_report_readers() -> None:
    """Latencies in acceptance order (canceled left out), detection lags, 429s by route."""
    report = {
        "accepted": [{"id": "a", "time": 1.0}, {"id": "b", "time": 2.0}, {"id": "c", "time": 3.0}],
        "terminal_at": {"a": 9.0, "b": 7.5, "c": 4.0},
        "first_seen_terminal": {"a": 9.25, "b": 8.5},
        "statuses": {"a": "completed", "b": "failed", "c": "canceled"},
        "rejected": {"RateLimitExceeded": 3, "ConcurrencyLimitExceeded": 1},
        "rejected_by_route": {"run": 4},
    }
    assert an.accepted_latencies(report) == [8.0, 5.5]
    assert sorted(an.detection_lags(report)) == [0.25, 1.0]
    assert an.rejected_by_route(report) == {"run": 4, "total": 4}
    assert an.timeline(report, wall=10.0) == {"span_s": 8.25, "outside_s": 1.75, "last_lag_s": 0.25}
    assert an.ratio(3.0, 2.0) == 1.5
    assert math.isnan(an.ratio(1.0, 0.0))


def test_tiny_png_is_an_image() -> None:
    """The benchmarks' input image is a real 16x16 PNG, sent as a data URI."""
    with Image.open(io.BytesIO(harness.tiny_png())) as image:
        assert image.size == (16, 16)
    assert harness.tiny_data_uri().startswith("data:image/png;base64,")


def test_table_aligns_numbers_right_and_text_left() -> None:
    """Markdown table: text columns left-aligned, numbers right-aligned and formatted."""
    text = harness.table(["name", "value"], [["ours", 1.23456], ["official", 1234567]])
    assert text.splitlines() == [
        "| name     | value     |",
        "|----------|-----------|",
        "| ours     |      1.23 |",
        "| official | 1,234,567 |",
    ]
    assert harness.fmt(float("nan")) == "-"


def test_emulator_config_from_json() -> None:
    """The launcher turns [limit, period] pairs into WindowLimits and keeps the key."""
    config = launcher.config_from_json(
        {"time_scale": 0.01, "latency": [0, 0], "submit_limit": [25, 60], "status_limit": None},
        "k",
    )
    assert isinstance(config, EmulatorConfig)
    assert config.submit_limit == WindowLimit(25, 60.0)
    assert config.status_limit is None
    assert config.latency == {"*": Latency(((0.0, 0.0, 1.0),))}
    assert config.api_key == "k"


def test_polling_rows_trace_each_prediction_in_acceptance_order() -> None:
    """bench_polling keeps each prediction's latency, lag and polls, API seconds since
    it was accepted, in acceptance order; one not ended or not seen ended has no lag."""
    polling = _bench_polling()
    report = {
        "accepted": [
            {"id": "b", "time": 12.0},
            {"id": "a", "time": 10.0},
            {"id": "c", "time": 13.0},
        ],
        "terminal_at": {"a": 13.5, "b": 20.0},
        "first_seen_terminal": {"a": 14.0},
        "status_call_times": {"a": [11.0, 14.0], "c": [14.5]},
    }
    rows = polling.prediction_rows(report)
    assert rows == [
        {"latency_s": 3.5, "lag_s": 0.5, "polls_s": [1.0, 4.0]},
        {"latency_s": 8.0, "lag_s": None, "polls_s": []},
        {"latency_s": None, "lag_s": None, "polls_s": [1.5]},
    ]


def _bench_polling() -> ModuleType:
    sys.modules.setdefault("_analysis", an)  # (bench_polling imports them by name)
    sys.modules.setdefault("_harness", harness)
    return _load("bench_polling")


def test_the_polling_bound_counts_polls_at_the_sdks_spacing_and_cap() -> None:
    """bench_polling's bound: a client knowing 3-5/25-30 s, at 0.95 s and max_interval 10 s.
    One ending at 27.5 s polls at 3.95, 4.9, 5.85 (the mode crossed), twice in the gap
    (25.95 - 5.85 = 20.1 s: three stretches of at most 10 s), then 25.95, 26.9, 27.85: 8; one at
    4.2 s polls at 3.95 and 4.9: 2. Without the cap the gap takes none; at a 1 s spacing
    and no cap it is ``needed_calls``."""
    polling = _bench_polling()
    mix = [[3.0, 5.0, 1.0], [25.0, 30.0, 1.0]]
    assert polling.bound_calls(27.5, mix) == 3 + 2 + 3
    assert polling.bound_calls(4.2, mix) == 2
    assert polling.bound_calls(27.5, mix, max_interval=1e9) == 3 + 3
    assert polling.bound_calls(2.5, mix) == 1  # (before the first mode: one poll finds it)
    assert polling.bound_calls(27.5, mix, spacing=1.0, max_interval=1e9) == 2 + 3


@settings(max_examples=300, deadline=None)
@given(
    starts=st.lists(st.integers(1, 800), min_size=1, max_size=4, unique=True),
    widths=st.lists(st.integers(1, 240), min_size=4, max_size=4),
    at=st.integers(0, 64),
    spacing=st.floats(0.1, 1.0),
)
def test_the_polling_bound_is_the_need_at_a_1s_spacing_and_never_below_it(
    starts: list[int], widths: list[int], at: int, spacing: float
) -> None:
    """For modes at least 1 s apart (on a grid of 1/8 s, which floats hold exactly): with
    no cap, at a 1 s spacing the bound is exactly ``needed_calls`` (one poll a second
    through each mode so far), and at any spacing up to 1 s, cap or none, never below it."""
    polling = _bench_polling()
    modes, end = [], -1.0
    for start, width in zip(sorted(starts), widths, strict=False):
        low = max(start / 8, end + 1.0)
        modes.append([low, low + width / 8, 1.0])
        end = low + width / 8
    latency = modes[0][0] + at / 64 * (end - modes[0][0]) + 1 / 64
    need = polling.needed_calls(latency, modes)
    assert polling.bound_calls(latency, modes, spacing=1.0, max_interval=1e9) == need
    assert polling.bound_calls(latency, modes, spacing=spacing) >= need


def test_learning_bench_times_completions_and_checks_the_readme_figures() -> None:
    """bench_learning times the model's per-completion work with the shift test and
    without, and judges each count in progress against the README's figure for it."""
    sys.modules.setdefault("_harness", harness)
    learning = _load("bench_learning")
    (run,) = learning.measure(20, [6])
    assert run["with_shift_test"]["median_ms"] > 0
    assert run["without"]["median_ms"] > 0
    assert run["ratio"] == pytest.approx(
        run["with_shift_test"]["median_ms"] / run["without"]["median_ms"]
    )
    fast = {"with_shift_test": {"median_ms": 0.5, "refit_median_ms": 9.0}, "ratio": 30.0}
    slow = {"with_shift_test": {"median_ms": 2.0, "refit_median_ms": 20.0}, "ratio": 60.0}
    lines = learning.goals([{"in_progress": 6, **fast}, {"in_progress": 1000, **slow}])
    assert [line.split()[0] for line in lines] == ["MET", "MET", "MISSED"]
    assert "<= 1 ms" in lines[0]
    assert "<= 3 ms" in lines[1]
    assert "20.0 ms" in lines[2]
    (between, _) = learning.goals([{"in_progress": 50, **slow}])  # the next count's figure
    assert between.startswith("MET")
    assert "<= 3 ms" in between
