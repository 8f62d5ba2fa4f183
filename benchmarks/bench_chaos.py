"""Benchmark: 1,000 try-ons through a network that misbehaves (issue 12's chaos run).

The emulator (its own process, the API's limits, tryon-v1.6 latencies, a compressed
clock) injects, seeded: 5% gateway 502/504 HTML pages on POST /v1/run *after* the
prediction was created; 2% malformed 200 answers to the POST (truncated JSON, an HTML
page, JSON without an id) and to status calls; 2% dropped connections (before and after
the POST was handled; status calls too); 429 bursts with ``Retry-After: 0`` (and a date
in the past) on both routes; 502 pages on status calls.

Our client runs them as one ``batch()`` with its defaults, scaled to the clock. Judged
from the emulator's own record of what it created (payload digests, one per item):

* double charges: items with more than one prediction created (goal 0);
* hot loops: the most requests to one route within any API second, against the route's
  limit per window (goal: under it; the issue's client sent ~5,000 a second);
* accounting: every item done, failed or uncertain (goal: all 1,000); exactly as many
  uncertain items as POST answers a fault hid after the request was sent (nothing else
  may be uncertain), and how many of them really exist on the server; no failed item has
  a prediction (an orphan, charged);
* 429s from the emulator's own limits (not the injected ones): goal none.

    python benchmarks/bench_chaos.py [--quick] [--n 1000] [--scale 0.01] [--seed 12]
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from typing import Any

import _harness as h

from fashn_async import AsyncFashn, Limits, Polling, RetryPolicy, TryOnRequest, errors
from fashn_async._engine import Engine

NAME = "chaos"

#: The fault mix, as the emulator takes it (first rule that fires wins, per request).
FAULTS: list[dict[str, Any]] = [
    # POST /v1/run
    {"type": "http", "kind": "gateway_after", "route": "run", "status": 502, "probability": 0.025},
    {"type": "http", "kind": "gateway_after", "route": "run", "status": 504, "probability": 0.025},
    {"type": "http", "kind": "truncated", "route": "run", "probability": 0.007},
    {"type": "http", "kind": "not_json", "route": "run", "probability": 0.007},
    {"type": "http", "kind": "no_id", "route": "run", "probability": 0.006},
    {"type": "http", "kind": "drop_after", "route": "run", "probability": 0.01},
    {"type": "http", "kind": "drop_before", "route": "run", "probability": 0.01},
    {"type": "http", "kind": "throttle", "route": "run", "retry_after": "0", "probability": 0.05},
    {
        "type": "http",
        "kind": "throttle",
        "route": "run",
        "code": "ConcurrencyLimitExceeded",
        "retry_after": "Thu, 01 Jan 2015 00:00:00 GMT",
        "probability": 0.02,
    },
    # GET /v1/status
    {"type": "http", "kind": "truncated", "route": "status", "probability": 0.01},
    {"type": "http", "kind": "not_json", "route": "status", "probability": 0.01},
    {"type": "http", "kind": "drop_after", "route": "status", "probability": 0.02},
    {
        "type": "http",
        "kind": "gateway_before",
        "route": "status",
        "status": 502,
        "probability": 0.05,
    },
    {
        "type": "http",
        "kind": "throttle",
        "route": "status",
        "retry_after": "0",
        "probability": 0.05,
    },
]
#: Fault kinds that hide the answer to a POST that was sent: each makes one item uncertain.
HIDING = frozenset(
    {
        "gateway_after",
        "gateway_before",
        "truncated",
        "not_json",
        "no_id",
        "drop_after",
        "drop_before",
        "cut_off",
        "bad_status_line",
    }
)
#: Each route's limit per window (API docs), the ceiling for requests in any one second.
ROUTE_LIMITS = {"run": h.SUBMIT[0], "status": h.STATUS[0]}


def digest(body: Any) -> str:
    """SHA-256 of canonical JSON, as the emulator's ``payload_digest`` computes it."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


async def _run_batch(url: str, n: int, scale: float) -> tuple[list[dict[str, Any]], float]:
    image = h.tiny_data_uri()
    requests = [
        TryOnRequest(model_image=image, garment_image=image, category="tops", seed=i)
        for i in range(n)
    ]
    digests = [digest((await Engine.prepare(request)).body) for request in requests]
    items: list[dict[str, Any]] = []
    started = time.monotonic()
    async with (
        AsyncFashn(
            api_key=h._child_env()["FASHN_API_KEY"],
            base_url=url,
            limits=Limits().scaled(scale),
            polling=Polling().scaled(scale),
            retry=RetryPolicy().scaled(scale),
            trust_env=False,
        ) as client,
        client.batch(requests) as batch,
    ):
        async for result in batch:
            error = result.error
            if result.ok:
                state = "done"
            elif isinstance(error, errors.SubmissionUncertainError):
                state = "uncertain"
            else:
                state = "failed"
            items.append(
                {
                    "index": result.index,
                    "state": state,
                    "error": None if error is None else type(error).__name__,
                    "prediction_id": result.prediction_id,
                    "digest": digests[result.index],
                }
            )
    return items, time.monotonic() - started


def judge(items: list[dict[str, Any]], report: dict[str, Any], n: int) -> dict[str, Any]:
    """The figures: double charges, hot loops, accounting against the emulator's record."""
    created = Counter(s["payload_digest"] for s in report["accepted"])
    states = Counter(item["state"] for item in items)
    uncertain = [i for i in items if i["state"] == "uncertain"]
    exists = sum(1 for i in uncertain if created[i["digest"]] >= 1)
    lost = len(uncertain) - exists
    orphans = sum(1 for i in items if i["state"] == "failed" and created[i["digest"]] >= 1)
    done_wrong = sum(1 for i in items if i["state"] == "done" and created[i["digest"]] != 1)
    rps = report["max_requests_per_second"]
    return {
        "n": n,
        "done": states["done"],
        "failed": states["failed"],
        "uncertain": states["uncertain"],
        "uncertain_with_prediction": exists,
        "uncertain_lost_before_handled": lost,
        "unaccounted": n - len({i["index"] for i in items}),
        "double_charges": sum(1 for count in created.values() if count > 1),
        "duplicates_seen_by_emulator": report["duplicates"],
        "orphans": orphans,
        "done_without_one_prediction": done_wrong,
        "failed_errors": dict(Counter(i["error"] for i in items if i["state"] == "failed")),
        "faults": report["faults"],
        "dropped": report["dropped"],
        "requests_by_route": report["requests_by_route"],
        "max_requests_per_second": rps,
        "rejected_429_by_limits": report["rejected_by_route"],
        "rejected_429_by_code": report["rejected"],
        "posts_dropped_before_handled": sum(
            report["faults"].get(f"run:{kind}", 0) for kind in ("drop_before", "gateway_before")
        ),
        "answers_hidden_on_run": sum(
            count
            for key, count in report["faults"].items()
            if key.startswith("run:") and key.removeprefix("run:") in HIDING
        ),
        "accepted": len(report["accepted"]),
    }


def goals(run: dict[str, Any]) -> list[str]:
    """One line per goal: met or missed, with the figures."""
    rps = run["max_requests_per_second"]
    hot = {route: rps.get(route, 0) for route in ROUTE_LIMITS}
    cool = all(hot[route] <= limit for route, limit in ROUTE_LIMITS.items())
    accounted = run["done"] + run["failed"] + run["uncertain"] == run["n"]
    checks = [
        (run["double_charges"] == 0, f"double charges {run['double_charges']} (goal 0)"),
        (
            cool,
            "max requests in one API second: "
            + ", ".join(f"{r} {hot[r]} (limit {ROUTE_LIMITS[r]})" for r in ROUTE_LIMITS),
        ),
        (
            accounted and run["unaccounted"] == 0,
            f"accounted {run['done']} done + {run['failed']} failed + {run['uncertain']} "
            f"uncertain = {run['done'] + run['failed'] + run['uncertain']} of {run['n']}",
        ),
        (
            run["uncertain"] == run["answers_hidden_on_run"]
            and run["uncertain_lost_before_handled"] == run["posts_dropped_before_handled"],
            f"uncertain {run['uncertain']} = POST answers hidden by a fault "
            f"{run['answers_hidden_on_run']}: {run['uncertain_with_prediction']} exist on the "
            f"server; {run['uncertain_lost_before_handled']} do not = POSTs the emulator "
            f"dropped before acting {run['posts_dropped_before_handled']} (a client cannot "
            "tell those apart)",
        ),
        (
            run["orphans"] == 0,
            f"failed items with a prediction (orphans) {run['orphans']} (goal 0)",
        ),
        (
            not run["rejected_429_by_code"],
            f"429s from the emulator's own limits {run['rejected_429_by_code']} (goal none: "
            "an uncertain prediction keeps its in-flight slot while it may run)",
        ),
    ]
    return [h.verdict(ok, text) for ok, text in checks]


def main() -> None:
    parser = h.parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, help="try-ons (default 1000; --quick 200)")
    parser.add_argument("--scale", type=float, default=0.01, help="emulator time scale")
    parser.add_argument("--seed", type=int, default=12, help="seed of the fault draws")
    args = parser.parse_args()
    n = args.n or (200 if args.quick else 1000)
    started = time.monotonic()
    info = h.machine()
    config = {**h.emulator_config(scale=args.scale, seed=args.seed), "faults": FAULTS}
    with h.emulator(config) as emu:
        items, wall = asyncio.run(_run_batch(emu.url, n, args.scale))
        report = emu.report()
    run = judge(items, report, n)
    run["wall_real_s"] = round(wall, 1)
    run["wall_api_s"] = round(wall / args.scale)
    rows = [
        [key, json.dumps(value) if isinstance(value, dict) else value] for key, value in run.items()
    ]
    text = (
        f"Chaos: {n} try-ons, scale {args.scale} (1 API s = {1000 * args.scale:g} ms real), "
        f"fault seed {args.seed}\n" + h.table(["figure", "value"], rows)
    )
    h.report(
        args.results,
        NAME,
        info=info,
        goal="0 double charges, no hot loop, every item accounted for",
        runs=[run],
        text=text,
        verdicts=goals(run),
        started=started,
        faults=FAULTS,
    )


if __name__ == "__main__":
    main()
