"""Benchmark 5: the cost per prediction as N grows (it must stay flat).

N = 10, 100, 1,000, 10,000 try-ons through ``client.batch()`` over a lazy generator,
against an emulator with zero latency and no limits (``Limits.unlimited()``, polling at
once). Each N runs in a fresh client process against a fresh emulator. Wall time and CPU
seconds of the client are divided by N, and compared with the same figures at N = 1,000
measured in the same run (at N = 10 and 100 the start-up -- imports done, the first
connections, the thread pool -- is still a visible share). The marginal cost (the extra
CPU per extra prediction from one N to the next) leaves start-up out altogether. The
official SDK (``asyncio.gather`` of ``subscribe()``, 64 at once, as the batch runs 64 at
once) is measured beside it up to N = 1,000 (``--official-max``): at 10,000 it alone
would take longer than the rest of the script.

    python benchmarks/bench_scaling.py [--quick] [--n 10 100 1000 10000] [--official-max N]
"""

from __future__ import annotations

import time
from typing import Any

import _analysis as an
import _harness as h

NAME = "scaling"
BASELINE_N = 1000
#: Flat means: per-prediction CPU at every N >= BASELINE_N within this factor of N=1000's.
FLAT = 1.25
CONCURRENCY = 64


def run_once(client: str, n: int) -> dict[str, Any]:
    """One client, one N, a fresh zero-latency, unlimited emulator."""
    config = h.emulator_config(scale=1.0, latency=(0.0, 0.0), limits=False)
    with h.emulator(config) as emu:
        spec = h.client_spec(client, emu.url, n)
        if client == "ours":
            spec |= {"api": "batch", "limits": "unlimited", "polling": h.IMMEDIATE_POLLING}
        else:
            spec |= {"poll_ms": 1000, "concurrency": CONCURRENCY}
        result = h.run_client(spec)
        calls = emu.report()["status_calls_total"]
    return {
        "client": client,
        "n": n,
        "completed": result["completed"],
        "outcomes": result["outcomes"],
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
        "wall_ms_per_prediction": 1000 * result["wall_s"] / n,
        "cpu_ms_per_prediction": 1000 * result["cpu_s"] / n,
        "status_calls_per_prediction": calls / n,
        "rss_growth_mb": (result["rss_peak"] - result["rss_before"]) / 2**20,
    }


def add_ratios(runs: list[dict[str, Any]]) -> None:
    """Per-prediction figures over the same client's at N = BASELINE_N (same run)."""
    for client in ("ours", "official"):
        mine = [r for r in runs if r["client"] == client]
        base = next((r for r in mine if r["n"] == BASELINE_N), None)
        for run in mine:
            for key in ("cpu", "wall"):
                value = run[f"{key}_ms_per_prediction"]
                run[f"{key}_vs_n{BASELINE_N}"] = (
                    an.ratio(value, base[f"{key}_ms_per_prediction"]) if base else float("nan")
                )
        previous = None
        for run in sorted(mine, key=lambda r: r["n"]):
            run["marginal_cpu_ms"] = (
                1000 * (run["cpu_s"] - previous["cpu_s"]) / (run["n"] - previous["n"])
                if previous is not None
                else float("nan")
            )
            previous = run
    official = {r["n"]: r for r in runs if r["client"] == "official"}
    for run in runs:
        other = official.get(run["n"])
        if run["client"] == "ours" and other is not None:
            run["cpu_vs_official"] = an.ratio(
                run["cpu_ms_per_prediction"], other["cpu_ms_per_prediction"]
            )


def render(runs: list[dict[str, Any]]) -> str:
    """The curve: one row per (N, client)."""
    rows = [
        [
            run["n"],
            run["client"],
            f"{run['completed']}/{run['n']}",
            run["wall_ms_per_prediction"],
            run["cpu_ms_per_prediction"],
            run[f"wall_vs_n{BASELINE_N}"],
            run[f"cpu_vs_n{BASELINE_N}"],
            run["marginal_cpu_ms"],
            run.get("cpu_vs_official"),
            run["status_calls_per_prediction"],
        ]
        for run in sorted(runs, key=lambda r: (r["n"], r["client"] != "ours"))
    ]
    headers = [
        "N",
        "client",
        "done",
        "wall ms/pred",
        "CPU ms/pred",
        f"wall/pred vs N={BASELINE_N}",
        f"CPU/pred vs N={BASELINE_N}",
        "marginal CPU ms",
        "CPU vs official",
        "status calls/pred",
    ]
    return (
        "Scaling: zero-latency emulator without limits; ours through client.batch() "
        f"(lazy generator), official gather of subscribe() {CONCURRENCY} at once\n"
        + h.table(headers, rows)
    )


def goals(runs: list[dict[str, Any]]) -> list[str]:
    """Flat: per-prediction CPU of ours at every N >= BASELINE_N within FLAT of its own."""
    ours = [r for r in runs if r["client"] == "ours" and r["n"] >= BASELINE_N]
    worst = max((r[f"cpu_vs_n{BASELINE_N}"] for r in ours), default=float("nan"))
    met = worst <= FLAT and all(r["completed"] == r["n"] for r in ours)
    return [
        h.verdict(
            met,
            f"scaling: ours' CPU per prediction at N >= "
            f"{BASELINE_N:,} is at most {worst:.2f}x that at N={BASELINE_N:,} (flat: <= {FLAT})",
        )
    ]


def main() -> None:
    args_parser = h.parser(__doc__.splitlines()[0])
    args_parser.add_argument("--n", type=int, nargs="+", help="values of N")
    args_parser.add_argument(
        "--official-max", type=int, default=1000, help="largest N for the official SDK (0: none)"
    )
    args = args_parser.parse_args()
    ns = args.n or ([10, 100, 1000] if args.quick else [10, 100, 1000, 10000])
    started = time.monotonic()
    info = h.machine()
    runs = [
        run_once(client, n)
        for n in ns
        for client in ("ours", "official")
        if client == "ours" or n <= args.official_max
    ]
    add_ratios(runs)
    text = render(runs)
    verdicts = goals(runs)
    h.report(
        args.results,
        NAME,
        info=info,
        goal=f"ours: CPU per prediction flat in N (within {FLAT}x of N={BASELINE_N})",
        runs=runs,
        text=text,
        verdicts=verdicts,
        started=started,
    )


if __name__ == "__main__":
    main()
