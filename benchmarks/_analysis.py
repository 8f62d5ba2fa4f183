"""Pure arithmetic over emulator reports: ideal schedules, lags, percentiles.

No I/O and no imports from the rest of benchmarks/, so tests/test_benchmarks_smoke.py can
check every function here on hand-made inputs. Times are API seconds throughout.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "accepted_latencies",
    "detection_lags",
    "formula_time",
    "last_group_latency",
    "makespan",
    "max_in_window",
    "optimal_schedule",
    "percentile",
    "ratio",
    "rejected_by_route",
    "timeline",
]

#: Float residue forgiven when comparing times (the emulator rounds to 1 us).
EPSILON = 1e-6


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks; NaN if empty."""
    data = sorted(values)
    if not data:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], got {q!r}")
    rank = (len(data) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def ratio(value: float, baseline: float) -> float:
    """``value / baseline``, NaN when the baseline is not positive."""
    return value / baseline if baseline > 0 else math.nan


def formula_time(n: int, limit: int, period: float, last_latency: float) -> float:
    """The issue's lower bound for N submissions at R per W: floor((N-1)/R)*W + latency.

    The first R go at once, each later group of R one window after the one before; the
    batch ends when the slowest prediction of the last group ends.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return (n - 1) // limit * period + last_latency


def last_group_latency(latencies: Sequence[float], limit: int) -> float:
    """The longest latency among the predictions of the last window (submission order)."""
    if not latencies:
        raise ValueError("no latencies")
    start = (len(latencies) - 1) // limit * limit
    return max(latencies[start:])


def optimal_schedule(
    latencies: Sequence[float], *, limit: int, period: float, in_flight: int | None
) -> list[float]:
    """The earliest submission times of a clairvoyant client, in submission order.

    The emulator gives the i-th accepted submission the i-th latency of its seeded draw,
    whoever sends it, so the latencies are fixed per position. Submission i may go at the
    earliest t that is (a) no earlier than submission i-1, (b) at least ``period`` after
    submission i-``limit`` (at most ``limit`` in any window), and (c) a moment when fewer
    than ``in_flight`` earlier predictions are still running (one ending at t frees its
    slot at t). Every constraint only loosens when earlier submissions go earlier, so
    sending each one as early as allowed minimises every start time, and so the end.
    """
    if limit < 1 or period <= 0:
        raise ValueError("limit must be >= 1 and period > 0")
    if in_flight is not None and in_flight < 1:
        raise ValueError("in_flight must be >= 1 or None")
    starts: list[float] = []
    # The `in_flight` latest end times so far; the smallest of them is when a slot frees.
    latest_ends: list[float] = []
    for index, latency in enumerate(latencies):
        t = starts[-1] if starts else 0.0
        if index >= limit:
            t = max(t, starts[index - limit] + period)
        if in_flight is not None and len(latest_ends) == in_flight:
            t = max(t, latest_ends[0])
        starts.append(t)
        end = t + latency
        if in_flight is not None:
            if len(latest_ends) < in_flight:
                heapq.heappush(latest_ends, end)
            elif end > latest_ends[0]:
                heapq.heapreplace(latest_ends, end)
    return starts


def makespan(starts: Sequence[float], latencies: Sequence[float]) -> float:
    """When the last prediction ends, given its start times (the first starts at 0)."""
    return max(start + latency for start, latency in zip(starts, latencies, strict=True))


def max_in_window(times: Iterable[float], period: float) -> int:
    """The most events in any half-open window ``(t - period, t]``."""
    log = sorted(times)
    best = start = 0
    for end, when in enumerate(log):
        while when - log[start] >= period - EPSILON:
            start += 1
        best = max(best, end - start + 1)
    return best


def accepted_latencies(report: Mapping[str, Any]) -> list[float]:
    """Each accepted submission's latency (end minus acceptance), in acceptance order.

    Predictions that have not ended (or were canceled) are left out.
    """
    terminal: Mapping[str, float] = report["terminal_at"]
    statuses: Mapping[str, str] = report.get("statuses", {})
    latencies = []
    for item in report["accepted"]:
        pid = item["id"]
        if pid in terminal and statuses.get(pid, "completed") != "canceled":
            latencies.append(round(terminal[pid] - item["time"], 6))
    return latencies


def detection_lags(report: Mapping[str, Any]) -> list[float]:
    """For each ended prediction, API seconds from its end to the first answer showing it."""
    terminal: Mapping[str, float] = report["terminal_at"]
    seen: Mapping[str, float] = report["first_seen_terminal"]
    return [max(seen[pid] - terminal[pid], 0.0) for pid in terminal if pid in seen]


def timeline(report: Mapping[str, Any], wall: float) -> dict[str, float]:
    """Where a run's wall time went, as far as the server saw it.

    ``span_s``: first acceptance to the last end seen; ``outside_s``: the client's wall
    time minus that span (its start-up before the first request landed, the last answer's
    way back); ``last_lag_s``: from the last end to the answer showing it.
    """
    accepted = [item["time"] for item in report["accepted"]]
    seen = list(report["first_seen_terminal"].values())
    ends = list(report["terminal_at"].values())
    if not accepted or not seen:
        return {"span_s": math.nan, "outside_s": math.nan, "last_lag_s": math.nan}
    span = max(seen) - min(accepted)
    return {"span_s": span, "outside_s": wall - span, "last_lag_s": max(seen) - max(ends)}


def rejected_by_route(report: Mapping[str, Any]) -> dict[str, int]:
    """429 answers per route, with ``total``."""
    routes = dict(report.get("rejected_by_route", {}))
    routes["total"] = sum(report.get("rejected", {}).values())
    return routes
