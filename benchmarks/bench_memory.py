"""Benchmark 4: memory of a big batch: peak RSS must not grow with N.

A process feeds a lazy generator of N pairs through ``client.batch()`` (Limits.unlimited,
so up to 64 pending) against an emulator with zero latency and no limits, and counts the
results without keeping them. Growth = peak RSS of the process (``ru_maxrss``) minus its
RSS just before the batch started (after imports and opening the client). The baseline
is the growth of the smallest N in the same run: if memory does not depend on N, the
larger batches grow no more than it. RSS is also sampled at every tenth of each batch.

N = 100,000 is left to ``--n 2000 20000 100000``: the emulator slows down as it keeps
every prediction (6 ms each at 100,000, 2 ms at 2,000), so it takes about 11 minutes.

    python benchmarks/bench_memory.py [--quick] [--n 2000 20000 100000]
"""

from __future__ import annotations

import time
from typing import Any

import _harness as h

NAME = "memory"
GOAL_MB = 30.0
#: Growth beyond the smallest batch's that still counts as "does not depend on N".
FLAT_MB = 5.0
MB = 2**20


def run_once(n: int, profile: str | None = None) -> dict[str, Any]:
    """One batch of ``n`` in a fresh client process against a fresh emulator."""
    config = h.emulator_config(scale=1.0, latency=(0.0, 0.0), limits=False)
    with h.emulator(config) as emu:
        spec = h.client_spec(
            "ours",
            emu.url,
            n,
            api="batch",
            limits="unlimited",
            polling=h.IMMEDIATE_POLLING,
            rss_checkpoints=10,
        )
        if profile:
            spec["profile"] = profile
        result = h.run_client(spec, timeout=1800)
    before = result["rss_before"]
    return {
        "n": n,
        "completed": result["completed"],
        "outcomes": result["outcomes"],
        "rss_before_mb": before / MB,
        "rss_peak_mb": result["rss_peak"] / MB,
        "rss_after_mb": result["rss_after"] / MB,
        "growth_mb": (result["rss_peak"] - before) / MB,
        "trace_mb": [[done, round((rss - before) / MB, 2)] for done, rss in result["rss_trace"]],
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
    }


def render(runs: list[dict[str, Any]]) -> str:
    """One row per N: RSS before, peak, growth, growth over the smallest N's."""
    base = runs[0]["growth_mb"]
    rows = [
        [
            run["n"],
            f"{run['completed']}/{run['n']}",
            run["rss_before_mb"],
            run["rss_peak_mb"],
            run["growth_mb"],
            run["growth_mb"] - base,
            " ".join(f"{mb:.1f}" for _, mb in run["trace_mb"]),
            run["wall_s"],
        ]
        for run in runs
    ]
    headers = [
        "N",
        "done",
        "RSS before (MB)",
        "peak RSS (MB)",
        "growth (MB)",
        f"growth - growth at N={runs[0]['n']:,}",
        "growth at each tenth (MB)",
        "wall (s)",
    ]
    return (
        "Memory: a lazy generator of N pairs through client.batch(), zero-latency emulator, "
        "64 pending\n" + h.table(headers, rows)
    )


def goals(runs: list[dict[str, Any]]) -> list[str]:
    """Growth at most GOAL_MB at every N, and no more than FLAT_MB over the smallest N's."""
    base = runs[0]["growth_mb"]
    lines = []
    for run in runs:
        met = (
            run["growth_mb"] <= GOAL_MB
            and run["growth_mb"] - base <= FLAT_MB
            and run["completed"] == run["n"]
        )
        lines.append(
            h.verdict(
                met,
                f"memory N={run['n']:,}: peak RSS growth "
                f"{run['growth_mb']:.1f} MB (goal <= {GOAL_MB:g}), "
                f"{run['growth_mb'] - base:+.1f} MB over N={runs[0]['n']:,} (flat: <= {FLAT_MB:g})",
            )
        )
    return lines


def main() -> None:
    args_parser = h.parser(__doc__.splitlines()[0])
    args_parser.add_argument("--n", type=int, nargs="+", help="batch sizes, smallest first")
    args = args_parser.parse_args()
    ns = sorted(args.n or ([1000, 5000] if args.quick else [2000, 20000]))
    started = time.monotonic()
    info = h.machine()
    runs = []
    for n in ns:
        profile = str(h.RESULTS / "profiles" / f"{NAME}_{n}.txt") if args.profile else None
        runs.append(run_once(n, profile))
    text = render(runs)
    verdicts = goals(runs)
    h.report(
        args.results,
        NAME,
        info=info,
        goal=f"peak RSS growth <= {GOAL_MB:g} MB, independent of N",
        runs=runs,
        text=text,
        verdicts=verdicts,
        started=started,
    )


if __name__ == "__main__":
    main()
