"""Benchmark: the bulk CLI's dry run streams its catalog, and the journal's fsync stall.

**Dry run.** ``fashn-async batch catalog.csv --dry-run`` over N-row catalogs (two image
files, every row valid), each in a fresh process: peak RSS (``ru_maxrss``) and wall
time. The baseline is the smallest N of the same run: memory that does not grow with N
stays within ``FLAT_MB`` of it.

**Loop stall.** The longest the event loop is blocked by the journal's ``submitting``
write (one fsynced SQLite transaction), measured by a 1 ms ticker task on the loop
while 200 rows are written: synchronously on the loop (the journal's plain method) and
through :meth:`Journal.sending_off_loop` (the same write in a worker thread, awaited).

    python benchmarks/bench_bulk.py [--quick] [--rows 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h

NAME = "bulk"
FLAT_MB = 10.0
MB = 2**20


def catalog(folder: Path, rows: int) -> Path:
    """A CSV of ``rows`` valid rows over two small images."""
    from fashn_async.testing import sample_image

    (folder / "m.png").write_bytes(sample_image("model", size=(32, 32)))
    (folder / "g.png").write_bytes(sample_image("garment", size=(32, 32)))
    path = folder / f"catalog_{rows}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "model_image", "garment_image", "category", "seed"])
        writer.writerows([f"sku-{n}", "m.png", "g.png", "tops", n] for n in range(rows))
    return path


def dry_run(path: Path) -> dict[str, Any]:
    """One dry run in a fresh process: exit code, peak RSS (MB), wall seconds."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "print(code, time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    command = [sys.executable, "-m", "fashn_async", "batch", str(path), "--out", "unused",
               "--dry-run"]  # fmt: skip
    out = subprocess.run(  # our own interpreter and code
        [sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True
    ).stdout.split()
    code, seconds, kib = int(out[0]), float(out[1]), int(out[2])
    return {"exit_code": code, "seconds": round(seconds, 2), "peak_rss_mb": round(kib / 1024, 1)}


async def stall(rows: int, folder: Path, *, off_loop: bool) -> dict[str, Any]:
    """The longest loop stall (ms) while ``rows`` submitting writes are made."""
    from fashn_async.bulk import Journal, load_catalog

    path = catalog(folder, rows)
    loaded = load_catalog(path)
    out = folder / f"out_{'thread' if off_loop else 'loop'}"
    late: list[float] = []
    done = False

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not done:
            before = loop.time()
            await asyncio.sleep(0.001)
            late.append(loop.time() - before - 0.001)

    with Journal.open(out, meta={}, rows=loaded.rows) as journal:
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        for row in range(1, rows + 1):
            if off_loop:
                await journal.sending_off_loop(row)
            else:
                journal.sending(row)
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - started
        done = True
        await task
    late.sort()
    blocked = sum(late)
    return {
        "writes": rows,
        "max_stall_ms": round(late[-1] * 1000, 2),
        "p95_stall_ms": round(late[int(len(late) * 0.95)] * 1000, 2),
        "median_stall_ms": round(late[len(late) // 2] * 1000, 3),
        "ticker_late_total_ms": round(blocked * 1000, 1),
        "per_write_ms": round(elapsed / rows * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 and 100,000 rows only")
    parser.add_argument("--stall-only", action="store_true", help="only the loop stall")
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else args.rows
    sizes = sizes[:1] if args.stall_only else sizes
    started = time.monotonic()
    info = h.machine()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in sizes:
            runs.append({"rows": n, **dry_run(catalog(folder, n))})
        loop_stall = asyncio.run(stall(200, folder, off_loop=False))
        thread_stall = asyncio.run(stall(200, folder, off_loop=True))
    base = runs[0]["peak_rss_mb"]
    lines = ["rows       peak RSS MB  vs smallest  seconds  rows/s"]
    for run in runs:
        rate = run["rows"] / run["seconds"]
        lines.append(
            f"{run['rows']:>9,}  {run['peak_rss_mb']:>11}  {run['peak_rss_mb'] / base:>10.2f}x"
            f"  {run['seconds']:>7}  {rate:>7,.0f}"
        )
    for label, figures in (("on the loop", loop_stall), ("in a thread", thread_stall)):
        lines.append(
            f"journal 'submitting' write {label}: loop stall median "
            f"{figures['median_stall_ms']} ms, p95 {figures['p95_stall_ms']} ms, max "
            f"{figures['max_stall_ms']} ms; {figures['per_write_ms']} ms per write"
        )
    flat = all(run["peak_rss_mb"] - base <= FLAT_MB for run in runs)
    verdicts = [
        f"{'PASS' if flat else 'FAIL'}: dry-run peak RSS within {FLAT_MB:g} MB of the "
        f"{runs[0]['rows']:,}-row baseline at every size",
        "loop stall p95 ratio (in a thread / on the loop): "
        f"{thread_stall['p95_stall_ms'] / max(loop_stall['p95_stall_ms'], 1e-6):.2f}",
    ]
    h.report(
        h.HERE / "results", NAME, info=info, goal=f"flat within {FLAT_MB} MB", runs=runs,
        text="\n".join(lines), verdicts=verdicts, started=started,
        stall={"on_loop": loop_stall, "off_loop": thread_stall},
    )  # fmt: skip


if __name__ == "__main__":
    main()
