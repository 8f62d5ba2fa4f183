"""Benchmark: what learning a latency class costs the event loop, per completion.

Each completion a poller sees goes to its class's model (``CompletionModel.observe``),
on the event loop: the interval is filed, and the shift test (:mod:`fashn_async._shift`,
a log-rank test of the newest 12 of the last 200 predictions against the others, running
ones read as censored) runs. A refit (Turnbull's EM over every completion remembered)
runs in a worker thread, not on the loop; it is timed too.

The baseline, in the same run on the same completions: ``observe`` without the shift
test (no prediction number given), so the ratio is what the shift test adds to a
completion's cost. Completions are drawn from 5-11 s, bracketed by polls 0.95 s apart,
with ``--in-progress`` predictions running beside them (each of them a subject of the
shift test), the class's default memory of 200 completions; the first 250 completions
warm it up and are not timed. The medians are checked against what the README and the
code say: at most 1 ms a completion at 6 in progress and 3 ms at 1,000 (*Shifts*), a
refit of 200 at most 16 ms (``_polling.MAX_MEMORY``'s figure, for completions spread over
1-200 s; these span 5-11 s).

    python benchmarks/bench_learning.py [--quick] [--n 2000] [--in-progress 6 1000]
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

import _harness as h

from fashn_async import Polling
from fashn_async._plan import PollPlan
from fashn_async._polling import prior_for
from fashn_async._survival import CompletionModel

NAME = "learning"
WARM = 250
SPACING = 0.95
#: The figures checked, milliseconds: per completion on the loop by predictions in
#: progress (the next larger count's figure for any other), and a refit of 200.
CLAIMS_MS = {6: 1.0, 1000: 3.0}
REFIT_CLAIM_MS = 16.0


def _run(n: int, in_progress: int, *, shift_test: bool, seed: int) -> dict[str, Any]:
    """Time ``n`` completions (after WARM untimed) with ``in_progress`` running beside."""
    rng = random.Random(seed)
    polling = Polling()
    model = CompletionModel(polling, prior_for(("tryon-v1.6", "balanced", 1), polling))
    running: list[tuple[PollPlan, float]] = []  # (plan, its latency)
    clock = 0.0
    per_completion: list[float] = []
    refits: list[float] = []

    def submit() -> None:
        plan = PollPlan(model, rng)
        running.append((plan, clock + rng.uniform(5.0, 11.0)))

    for _ in range(in_progress):
        submit()
    for k in range(WARM + n):
        running.sort(key=lambda entry: entry[1])
        plan, ends = running.pop(0)
        clock = ends
        for other, _ in running:  # the others were seen running at their last poll
            other.last_running = max(other.last_running, clock - SPACING * rng.random())
        seen_done = ends + SPACING * rng.random()
        seen_running = max(seen_done - SPACING, 0.0)
        number = plan.number if shift_test else None
        started = time.perf_counter()
        model.observe(seen_running, seen_done, number)
        elapsed = time.perf_counter() - started
        if not shift_test and plan.number is not None:
            model.ended(plan.number)  # (untimed: it stops following the plan)
        job = model.refit_job()
        if job is not None:
            refit_started = time.perf_counter()
            model.apply(job())
            if k >= WARM:
                refits.append(time.perf_counter() - refit_started)
        if k >= WARM:
            per_completion.append(elapsed)
        submit()
    return {
        "median_ms": 1000 * statistics.median(per_completion),
        "p95_ms": 1000 * statistics.quantiles(per_completion, n=20)[-1],
        "refit_median_ms": 1000 * statistics.median(refits) if refits else float("nan"),
        "refits": len(refits),
    }


def measure(n: int, counts: list[int]) -> list[dict[str, Any]]:
    """One row per count in progress: with the shift test and without, alternated."""
    runs = []
    for in_progress in counts:
        with_test = _run(n, in_progress, shift_test=True, seed=in_progress)
        without = _run(n, in_progress, shift_test=False, seed=in_progress)
        runs.append(
            {
                "in_progress": in_progress,
                "n": n,
                "with_shift_test": with_test,
                "without": without,
                "ratio": with_test["median_ms"] / max(without["median_ms"], 1e-9),
            }
        )
    return runs


def render(runs: list[dict[str, Any]]) -> str:
    rows = [
        [
            run["in_progress"],
            run["with_shift_test"]["median_ms"],
            run["with_shift_test"]["p95_ms"],
            run["without"]["median_ms"],
            run["ratio"],
            run["with_shift_test"]["refit_median_ms"],
        ]
        for run in runs
    ]
    head = [
        "in progress",
        "loop ms / completion",
        "p95 ms",
        "baseline ms (no shift test)",
        "ratio",
        "refit ms (thread)",
    ]
    return "Learning's cost per completion, memory 200\n" + h.table(head, rows)


def goals(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for run in runs:
        claim = next(
            (ms for count, ms in sorted(CLAIMS_MS.items()) if run["in_progress"] <= count),
            max(CLAIMS_MS.values()),
        )
        median = run["with_shift_test"]["median_ms"]
        lines.append(
            h.verdict(
                median <= claim,
                f"{run['in_progress']} in progress: "
                f"{median:.2f} ms of the loop per completion (README: <= {claim:g} ms), "
                f"{run['ratio']:.1f} x the baseline without the shift test",
            )
        )
    refit = max(run["with_shift_test"]["refit_median_ms"] for run in runs)
    lines.append(
        h.verdict(
            refit <= REFIT_CLAIM_MS,
            f"refit of 200 in a worker thread: "
            f"{refit:.1f} ms median (MAX_MEMORY's figure: <= {REFIT_CLAIM_MS:g} ms)",
        )
    )
    return lines


def main() -> None:
    args_parser = h.parser(__doc__.splitlines()[0])
    args_parser.add_argument("--n", type=int, help="completions timed per run")
    args_parser.add_argument("--in-progress", type=int, nargs="+", help="predictions running")
    args = args_parser.parse_args()
    n = args.n or (500 if args.quick else 2000)
    counts = args.in_progress or [6, 1000]
    started = time.monotonic()
    info = h.machine()
    runs = measure(n, counts)
    h.report(
        args.results,
        NAME,
        info=info,
        goal="the README's figures: ms of the event loop per completion, and per refit",
        runs=runs,
        text=render(runs),
        verdicts=goals(runs),
        started=started,
    )


if __name__ == "__main__":
    main()
