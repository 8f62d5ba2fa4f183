"""Scale-out: 1, 2 and 4 client processes sharing one API key through Redis.

One emulator in its own process, with the API's limits (25 generations per 60 s window,
50 status calls per 10 s, 6 in flight) and its time compressed; 1, 2 or 4 client
processes, each an ``AsyncFashn(coordination=redis://...)`` running a batch of its share
of N try-ons, all started at the same moment. The baseline, measured in the same run:
the same processes with per-process limiters (no coordination), each of which believes
it has the whole key.

Throughput is the steady rate: from the first accepted submission to the first of the
last full window, ``jR / (t[jR] - t[0])``, divided by the limit R/W (1.0 is the limit;
a strict client with margin m reaches at most W / (W + m)). 429s and the most
submissions in any window come from the emulator's report. Redis calls are EVALSHA and
ZREM commands counted by the server (INFO commandstats), per accepted submission.

The margin is given in real seconds (default 30 ms): scheduling jitter between a grant
and the request's arrival does not shrink with the time scale.

    python benchmarks/bench_scaleout.py [--quick] [--scale 0.05] [--windows 6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import _analysis as an
import _harness as h

NAME = "scaleout"
PROCESSES = (1, 2, 4)
R, W = h.SUBMIT


# -- redis-server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_cli(port: int, *command: str) -> str:
    """One command over RESP, answer as text (enough for PING, INFO, CONFIG)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        parts = [f"*{len(command)}\r\n".encode()]
        for arg in command:
            parts.append(f"${len(arg.encode())}\r\n{arg}\r\n".encode())
        sock.sendall(b"".join(parts))
        data = b""
        while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode()


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, int, str]]:
    """A redis-server on a free loopback port, no persistence: (url, port, version)."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed: apt-get install redis-server")
    port = _free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                if _redis_cli(port, "PING").startswith("+PONG"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.01)
        info = _redis_cli(port, "INFO", "server")
        version = next(
            (
                line.split(":", 1)[1].strip()
                for line in info.splitlines()
                if "redis_version" in line
            ),
            "?",
        )
        yield f"redis://127.0.0.1:{port}/0", port, version
    finally:
        process.terminate()
        process.wait(timeout=10)


def _redis_calls(port: int) -> int:
    stats = _redis_cli(port, "INFO", "commandstats")
    total = 0
    for line in stats.splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:", "cmdstat_zrem:")):
            total += int(line.split("calls=", 1)[1].split(",", 1)[0])
    return total


# -- one client process ----------------------------------------------------------------


async def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Open a client, say ready, wait for go, run the batch, return outcomes."""
    import attrs

    from fashn_async import AsyncFashn, Limits, Polling, RedisCoordination, TryOnRequest

    scale = spec["scale"]
    limits = attrs.evolve(Limits().scaled(scale), credits=None, margin=spec["margin"])
    coordination = None
    if spec["redis"]:
        coordination = RedisCoordination(
            spec["redis"], lease_ttl=5.0, poll_interval=0.02, prefix=spec["prefix"]
        )
    request = TryOnRequest(model_image=spec["image"], garment_image=spec["image"], category="tops")
    async with AsyncFashn(
        base_url=spec["url"],
        limits=limits,
        polling=Polling().scaled(scale),
        coordination=coordination,
    ) as client:
        await client.credits()  # warm the first request's code paths and connection
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.monotonic()
        outcomes: dict[str, int] = {}
        async for result in client.batch(request for _ in range(spec["n"])):
            name = "ok" if result.ok else str(result.error and result.error.name)
            outcomes[name] = outcomes.get(name, 0) + 1
        return {"outcomes": outcomes, "wall_s": time.monotonic() - started}


def run_row(processes: int, *, redis: str | None, port: int, options: Any) -> dict[str, Any]:
    """``processes`` clients sharing one key, coordinated through Redis or not."""
    total = options.windows * R + 1
    shares = [total // processes + (i < total % processes) for i in range(processes)]
    config = h.emulator_config(scale=options.scale)
    if redis:
        _redis_cli(port, "CONFIG", "RESETSTAT")
    with h.emulator(config) as emu:
        workers = []
        try:
            for i, n in enumerate(shares):
                spec = {
                    "url": emu.url,
                    "redis": redis,
                    "prefix": f"bench{processes}",
                    "scale": options.scale,
                    "margin": options.margin,
                    "n": n,
                    "image": h.tiny_data_uri(),
                    "index": i,
                }
                workers.append(
                    subprocess.Popen(
                        [sys.executable, __file__, "--worker", json.dumps(spec)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        env=h._child_env(),
                    )
                )
            for worker in workers:
                assert worker.stdout is not None
                if worker.stdout.readline().strip() != "ready":
                    raise RuntimeError("a client process did not start")
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            results = []
            for worker in workers:
                assert worker.stdout is not None
                results.append(json.loads(worker.stdout.readline()))
                worker.wait(timeout=60)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        report = emu.report()
    times = sorted(s["time"] for s in report["accepted"])
    windows = (len(times) - 1) // R
    steady = windows * R / (times[windows * R] - times[0]) if windows else float("nan")
    outcomes: dict[str, int] = {}
    for result in results:
        for name, count in result["outcomes"].items():
            outcomes[name] = outcomes.get(name, 0) + count
    return {
        "processes": processes,
        "coordination": "redis" if redis else "per-process",
        "n": total,
        "accepted": len(times),
        "outcomes": outcomes,
        "throughput_per_limit": steady / (R / W),
        "rejected_429": sum(report["rejected"].values()),
        "rejected_by_route": an.rejected_by_route(report),
        "max_submissions_in_window": report["max_submissions_in_window"],
        "max_in_progress": report["max_in_progress"],
        "redis_calls_per_submission": _redis_calls(port) / len(times) if redis else None,
        "wall_s": max(r["wall_s"] for r in results),
    }


def _met(row: dict[str, Any]) -> bool:
    """The issue's goal for a coordinated row: no 429, <= R per window, >= 0.98 of R/W."""
    return bool(
        row["rejected_429"] == 0
        and row["max_submissions_in_window"] <= R
        and row["throughput_per_limit"] >= 0.98
    )


def main() -> None:
    parser = h.parser(__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=None, help="emulator time scale")
    parser.add_argument("--windows", type=int, default=None, help="full windows measured")
    parser.add_argument("--margin", type=float, default=0.03, help="client margin, real s")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one client process
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(asyncio.run(_worker(json.loads(options.worker)))), flush=True)
        return
    options.scale = options.scale or (0.04 if options.quick else 0.05)
    options.windows = options.windows or (3 if options.quick else 6)
    started = time.monotonic()
    info = h.machine()
    rows = []
    with redis_server() as (url, port, version):
        info["redis_server"] = version
        print(h.describe(info), f"; redis-server {version}", sep="", flush=True)
        for processes in PROCESSES:
            for redis in (None, url):
                rows.append(run_row(processes, redis=redis, port=port, options=options))
                print(f"  {processes} x {rows[-1]['coordination']}: done", flush=True)
    ceiling = W * options.scale / (W * options.scale + options.margin)
    caption = (
        f"Scale-out: one key, {R} generations / {W:g} s shared by 1-4 processes; "
        f"{rows[0]['n']} try-ons per row, time x{1 / options.scale:g} "
        f"(a window is {W * options.scale:g} s), margin {options.margin * 1000:g} ms "
        f"(throughput ceiling {ceiling:.3f})"
    )
    table = h.table(
        [
            "processes",
            "limits",
            "throughput / limit",
            "429s",
            "max in a window",
            "max in flight",
            "Redis calls / submission",
            "wall s",
        ],
        [
            [
                row["processes"],
                row["coordination"],
                f"{row['throughput_per_limit']:.4f}",
                row["rejected_429"],
                row["max_submissions_in_window"],
                row["max_in_progress"],
                row["redis_calls_per_submission"],
                row["wall_s"],
            ]
            for row in rows
        ],
    )
    goals = [
        f"{row['processes']} process(es) through Redis: {row['rejected_429']} 429s, at most "
        f"{row['max_submissions_in_window']} in a window (<= {R}), throughput "
        f"{row['throughput_per_limit']:.4f} of the limit (goal >= 0.98): "
        + ("met" if _met(row) else "NOT met")
        for row in rows
        if row["coordination"] == "redis"
    ]
    print(f"\n{caption}\n{table}\n", *goals, sep="\n")
    payload = {
        "machine": info,
        "command": h.command_line(),
        "settings": {
            "scale": options.scale,
            "windows": options.windows,
            "margin_s": options.margin,
            "limit": [R, W],
            "throughput_ceiling": ceiling,
        },
        "rows": rows,
        "table": f"{caption}\n{table}",
        "goals": goals,
    }
    path, elapsed = h.save(options.results, NAME, payload, started)
    print(f"\n{path} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
