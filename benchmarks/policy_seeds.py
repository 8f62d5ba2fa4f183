"""The polling policy alone over many seeds: how often each latency distribution misses
issue 13's goals, for our client and for the same given the true distribution.

The policy is simulated without HTTP by ``simulate()`` of tests/test_polling.py (the
poll plans of ``fashn_async._plan`` and the status budget granted as the client grants
it), so it needs the ``test`` extra. By default each seed runs as bench_polling does: 100
predictions, the API's status budget (50 calls / 10 s) and submission window (25 / 60 s),
6 in progress; ``--plain`` runs the suite's many-seed form instead (60 predictions, every
poll sent when due). Beside the six distributions bench_polling measures, it runs others
its goals were not written for (``--only`` picks any of them):

- 10-100 and 60-300 s: wide, far classes, where the 6 predictions in progress are most
  of the time all where completions are likely: the status budget (5 calls a second)
  cannot poll each of them every spacing (6.3 calls a second at 0.95 s);
- 15-20 s: a narrow class that starts late, whose need is small beside what learning it
  from the default prior costs;
- 20-120 s skewed (20-30, 30-45, 45-70, 70-120 s weighted 1 : 2 : 1.5 : 0.5): a class
  shaped as tryon-max might be (NOTES.md gives 20-120 s).

Columns: seeds whose p95 lag after the 12th exceeds 1 s (and the worst of them), the worst
p95 over all (goal 2 s), predictions after the 12th seen more than 2 s late (all seeds
together) and the longest lag, status calls per prediction against issue 13's goal (1.25
x one poll a second through each latency mode up to the latency, + 0.5) on average and
the seeds over it. Times are API seconds.

    python benchmarks/policy_seeds.py [--seeds 100] [--first 0] [--plain] [--only 30-120 ...]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_polling import DISTRIBUTIONS, Modes, needed, p95, simulate

from fashn_async import Polling

OTHERS: dict[str, Modes] = {
    "10-100": [(10.0, 100.0, 1.0)],
    "60-300": [(60.0, 300.0, 1.0)],
    "15-20": [(15.0, 20.0, 1.0)],
    "20-120 skewed": [(20.0, 30.0, 1.0), (30.0, 45.0, 2.0), (45.0, 70.0, 1.5), (70.0, 120.0, 0.5)],
}
ALL: dict[str, Modes] = {**DISTRIBUTIONS, **OTHERS}


def one(job: tuple[str, str, int, bool]) -> tuple[float, float, int, float, float]:
    """One seed: (p95 after the 12th, p95 over all, seen > 2 s late after the 12th,
    longest lag after the 12th, calls per prediction / goal)."""
    name, client, seed, plain = job
    modes = ALL[name]
    polling = Polling(prior=tuple(modes)) if client == "oracle" else None
    if plain:
        lags, calls, latencies = simulate(modes, seed, polling=polling)
    else:
        lags, calls, latencies = simulate(
            modes, seed, n=100, polling=polling, budget=(50, 10.0), submits=(25, 60.0)
        )
    need = statistics.mean(needed(x, modes) for x in latencies)
    after = lags[12:]
    goal = 1.25 * need + 0.5
    late = sum(g > 2.0 for g in after)
    return p95(after), p95(lags), late, max(after), statistics.mean(calls) / goal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="seeds per distribution")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--plain", action="store_true", help="60 predictions, no budget")
    parser.add_argument("--only", nargs="+", choices=list(ALL), metavar="NAME")
    parser.add_argument(
        "--clients", nargs="+", default=["ours", "oracle"], choices=["ours", "oracle"]
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    started = time.monotonic()
    seeds = range(args.first, args.first + args.seeds)
    form = (
        "60 predictions, polls sent when due"
        if args.plain
        else ("100 predictions, status budget 50 / 10 s, 25 submissions / 60 s, 6 in progress")
    )
    print(f"The policy simulated, seeds {seeds.start}-{seeds.stop - 1}: {form}")
    print(
        "| latency (s) | client | seeds p95 after 12 > 1 s | worst | worst p95 all "
        "| seen > 2 s late | longest (s) | calls / goal | seeds over |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with multiprocessing.Pool(args.jobs) as pool:
        for name in args.only or list(ALL):
            for client in args.clients:
                rows = pool.map(one, [(name, client, s, args.plain) for s in seeds])
                print(
                    f"| {name} | {client} | {sum(r[0] > 1.0 for r in rows)} / {len(rows)} "
                    f"| {max(r[0] for r in rows):.2f} | {max(r[1] for r in rows):.2f} "
                    f"| {sum(r[2] for r in rows)} | {max(r[3] for r in rows):.1f} "
                    f"| {statistics.mean(r[4] for r in rows):.3f} "
                    f"| {sum(r[4] > 1.0 for r in rows)} |",
                    flush=True,
                )
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
