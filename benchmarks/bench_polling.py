"""Benchmark 2: what polling costs, and how late a finished prediction is noticed.

N try-ons at tryon-v1.6 latencies (5 to 11 s) against an emulator with the API's default
limits (25 submissions / 60 s, 50 status calls / 10 s, 6 in progress), on a clock 10x
faster (``--scale 0.1``) so that real HTTP round-trips stay small in API seconds. Every
figure is in API seconds, read from the emulator's report.

* ours: ``asyncio.gather`` of ``client.run()``, ``Limits().scaled(s)`` and
  ``Polling().scaled(s)``;
* official: ``asyncio.gather`` of ``predictions.subscribe()``, whose fixed poll interval
  (1 s) is scaled the same way (``poll_interval=1000*s`` ms). So that only polling
  differs, each call is gated like ours: a semaphore of 6 around it and a strict sliding
  window (25 per 60 s plus the same margin) before it.

Detection lag = first status answer showing the end - the end. Calls per prediction
counts the admitted status calls (and, apart, the refused ones) over completed ones.

    python benchmarks/bench_polling.py [--quick] [--n 100] [--scale 0.1]
"""

from __future__ import annotations

import time
from typing import Any

import _analysis as an
import _harness as h

NAME = "polling"
GOAL_CALLS = 4.0
GOAL_P95 = 1.0
MARGIN = 0.25  # API seconds, as Limits.margin


def _spec(client: str, url: str, n: int, scale: float) -> dict[str, Any]:
    spec = h.client_spec(client, url, n, scale=scale)
    if client == "ours":
        spec["limits"] = "default"
    else:
        spec["poll_ms"] = max(round(1000 * scale), 1)
        spec["concurrency"] = h.IN_FLIGHT
        spec["window"] = [*h.SUBMIT, MARGIN]
    return spec


def measure(n: int, scale: float, profile: bool) -> list[dict[str, Any]]:
    """One run per client, each against a fresh emulator with the same latencies."""
    runs = []
    for client in ("ours", "official"):
        with h.emulator(h.emulator_config(scale=scale)) as emu:
            spec = _spec(client, emu.url, n, scale)
            if profile and client == "ours":
                spec["profile"] = str(h.RESULTS / "profiles" / f"{NAME}.txt")
            result = h.run_client(spec)
            report = emu.report()
        lags = an.detection_lags(report)
        completed = max(result["completed"], 1)
        rejected = an.rejected_by_route(report)
        runs.append(
            {
                "client": client,
                "n": n,
                "completed": result["completed"],
                "outcomes": result["outcomes"],
                "status_calls": report["status_calls_total"],
                "calls_per_prediction": report["status_calls_total"] / completed,
                "refused_per_prediction": rejected.get("status", 0) / completed,
                "lag_p50_s": an.percentile(lags, 50),
                "lag_p95_s": an.percentile(lags, 95),
                "lag_max_s": max(lags, default=float("nan")),
                "rejected_429": rejected,
                "max_status_in_window": report["max_status_in_window"],
                "wall_api_s": result["wall_s"] / scale,
                "client_cpu_s": result["cpu_s"],
            }
        )
    return runs


def render(runs: list[dict[str, Any]], scale: float) -> str:
    """The table of both runs, with our figures over the official SDK's."""
    ours, official = runs[0], runs[1]
    rows = [
        [
            run["client"],
            f"{run['completed']}/{run['n']}",
            run["calls_per_prediction"],
            run["refused_per_prediction"],
            run["lag_p50_s"],
            run["lag_p95_s"],
            run["lag_max_s"],
            run["rejected_429"]["total"],
            run["max_status_in_window"],
            run["wall_api_s"],
        ]
        for run in runs
    ]
    rows.append(
        [
            "ours / official",
            "",
            an.ratio(ours["calls_per_prediction"], official["calls_per_prediction"]),
            "",
            an.ratio(ours["lag_p50_s"], official["lag_p50_s"]),
            an.ratio(ours["lag_p95_s"], official["lag_p95_s"]),
            "",
            "",
            "",
            an.ratio(ours["wall_api_s"], official["wall_api_s"]),
        ]
    )
    headers = [
        "client",
        "done",
        "status calls/pred",
        "refused/pred",
        "lag p50 (s)",
        "lag p95 (s)",
        "lag max (s)",
        "429s",
        "max status/10 s",
        "wall (API s)",
    ]
    return (
        f"Polling cost at tryon-v1.6 latencies (5-11 s), default limits, time scale {scale:g}; "
        "times in API seconds\n" + h.table(headers, rows)
    )


def goals(runs: list[dict[str, Any]]) -> list[str]:
    """The goal line for our client."""
    ours = runs[0]
    calls, p95, errors = ours["calls_per_prediction"], ours["lag_p95_s"], ours["rejected_429"]
    met = calls <= GOAL_CALLS and p95 <= GOAL_P95 and errors["total"] == 0
    return [
        f"{'MET   ' if met else 'MISSED'} polling: {calls:.2f} status calls per prediction "
        f"(goal <= {GOAL_CALLS:g}), p95 lag {p95:.3f} s (goal <= {GOAL_P95:g}), "
        f"429s {errors['total']} (goal 0)"
    ]


def main() -> None:
    args_parser = h.parser(__doc__.splitlines()[0])
    args_parser.add_argument("--n", type=int, help="predictions per client (default 100)")
    args_parser.add_argument("--scale", type=float, default=0.1, help="emulator time scale")
    args = args_parser.parse_args()
    n = args.n or (30 if args.quick else 100)
    started = time.monotonic()
    info = h.machine()
    runs = measure(n, args.scale, args.profile)
    text = render(runs, args.scale)
    verdicts = goals(runs)
    h.report(
        args.results,
        NAME,
        info=info,
        goal=f"ours: <= {GOAL_CALLS:g} calls, p95 lag <= {GOAL_P95:g} s, 0 429s",
        runs=runs,
        text=text,
        verdicts=verdicts,
        started=started,
        time_scale=args.scale,
    )


if __name__ == "__main__":
    main()
