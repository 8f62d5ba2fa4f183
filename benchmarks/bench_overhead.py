"""Benchmark 3: CPU seconds the client spends per prediction life-cycle.

An emulator with zero latency and no limits, so the client is never waiting on the API's
clock; N try-ons (submit, status polls, result), ``asyncio.gather`` with at most 64 at
once on both sides. CPU = user + system seconds of the client's own process (every
thread) over the measured part: imports and start-up are left out. Runs alternate
ours/official ``--rounds`` times (against a fresh emulator each) and the median is kept,
because the machines are shared and noisy.

* ours: ``client.run()`` with ``Limits.unlimited()`` and a polling prior of 1-2 ms (it
  polls at once, as the official SDK does);
* official: ``predictions.subscribe()``, which polls right after submitting.

The emulator counts the status calls, so both sides are seen to do the same work.

    python benchmarks/bench_overhead.py [--quick] [--n 2000] [--rounds 3]
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import _analysis as an
import _harness as h

NAME = "overhead"
GOAL_RATIO = 0.5
CONCURRENCY = 64


def _spec(client: str, url: str, n: int) -> dict[str, Any]:
    spec = h.client_spec(client, url, n, concurrency=CONCURRENCY)
    if client == "ours":
        spec["limits"] = "unlimited"
        spec["polling"] = h.IMMEDIATE_POLLING
    else:
        spec["poll_ms"] = 1000
    return spec


def run_once(client: str, n: int, profile: str | None = None) -> dict[str, Any]:
    """One client against a fresh zero-latency, unlimited emulator."""
    config = h.emulator_config(scale=1.0, latency=(0.0, 0.0), limits=False)
    with h.emulator(config) as emu:
        spec = _spec(client, emu.url, n)
        if profile:
            spec["profile"] = profile
        result = h.run_client(spec)
        report = emu.report()
    completed = max(result["completed"], 1)
    return {
        "client": client,
        "n": n,
        "completed": result["completed"],
        "outcomes": result["outcomes"],
        "cpu_s": result["cpu_s"],
        "cpu_ms_per_prediction": 1000 * result["cpu_s"] / completed,
        "wall_s": result["wall_s"],
        "wall_ms_per_prediction": 1000 * result["wall_s"] / completed,
        "status_calls_per_prediction": report["status_calls_total"] / completed,
        "submissions": len(report["accepted"]),
        "process_cpu_s": result["process_cpu_s"],
        "rss_peak_mb": result["rss_peak"] / 2**20,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per client and our ratio to the official SDK."""
    out: dict[str, Any] = {}
    for client in ("ours", "official"):
        mine = [r for r in runs if r["client"] == client]
        out[client] = {
            key: statistics.median(r[key] for r in mine)
            for key in (
                "cpu_ms_per_prediction",
                "wall_ms_per_prediction",
                "status_calls_per_prediction",
                "rss_peak_mb",
            )
        }
        out[client]["rounds"] = [round(r["cpu_ms_per_prediction"], 3) for r in mine]
    out["cpu_ratio"] = an.ratio(
        out["ours"]["cpu_ms_per_prediction"], out["official"]["cpu_ms_per_prediction"]
    )
    out["wall_ratio"] = an.ratio(
        out["ours"]["wall_ms_per_prediction"], out["official"]["wall_ms_per_prediction"]
    )
    return out


def render(summary: dict[str, Any], n: int, rounds: int) -> str:
    """The table: medians per client, then the ratios."""
    rows = []
    for client in ("ours", "official"):
        s = summary[client]
        rows.append(
            [
                client,
                s["cpu_ms_per_prediction"],
                " ".join(f"{x:.3g}" for x in s["rounds"]),
                s["wall_ms_per_prediction"],
                s["status_calls_per_prediction"],
                s["rss_peak_mb"],
            ]
        )
    rows.append(["ours / official", summary["cpu_ratio"], "", summary["wall_ratio"], "", ""])
    headers = [
        "client",
        "CPU ms/pred (median)",
        "each round",
        "wall ms/pred",
        "status calls/pred",
        "peak RSS MB",
    ]
    return (
        f"Client overhead: N={n} per round, {rounds} rounds alternating, zero-latency "
        f"emulator without limits, {CONCURRENCY} at once\n" + h.table(headers, rows)
    )


def main() -> None:
    args_parser = h.parser(__doc__.splitlines()[0])
    args_parser.add_argument("--n", type=int, help="predictions per round (default 2000)")
    args_parser.add_argument("--rounds", type=int, help="rounds per client (default 3)")
    args = args_parser.parse_args()
    n = args.n or (300 if args.quick else 2000)
    rounds = args.rounds or (1 if args.quick else 3)
    started = time.monotonic()
    info = h.machine()
    runs = [run_once(client, n) for _ in range(rounds) for client in ("ours", "official")]
    if args.profile:  # extra rounds, left out of the figures: a profiler slows its client
        for client in ("ours", "official"):
            run_once(client, n, str(h.RESULTS / "profiles" / f"{NAME}_{client}.txt"))
    summary = summarize(runs)
    text = render(summary, n, rounds)
    ratio = summary["cpu_ratio"]
    verdicts = [
        h.verdict(
            ratio <= GOAL_RATIO,
            f"overhead: ours uses {ratio:.3f}x "
            f"the official SDK's CPU per prediction (goal <= {GOAL_RATIO})",
        )
    ]
    h.report(
        args.results,
        NAME,
        info=info,
        goal=f"ours CPU per prediction <= {GOAL_RATIO}x the official SDK's",
        runs=runs,
        text=text,
        verdicts=verdicts,
        started=started,
        summary=summary,
    )


if __name__ == "__main__":
    main()
