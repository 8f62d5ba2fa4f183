"""One client under test, alone in its process, so its CPU time and peak RSS are its own.

    FASHN_API_KEY=... python benchmarks/_client_proc.py '<spec JSON>'

The spec says which client (``ours``, ``naive``, ``official``), how it is driven
(``gather`` of ``run()``/``subscribe()``, or ``batch`` over a lazy generator), the
emulator's URL, N, and the time scale. One JSON line of measurements goes to stdout:
wall time, CPU seconds of the measured part, RSS before and at peak, outcomes. The key
is read from the environment by both SDKs and appears nowhere in the output.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any

import psutil


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _inputs(spec: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "model_image": spec["model_image"],
        "garment_image": spec["garment_image"],
        "category": "tops",
        "seed": index,
    }


class _SlidingWindow:
    """At most ``limit`` calls in any ``period`` seconds, first come first served.

    The baselines' stand-in for a careful user's own gate, kept apart from our client's
    code so that the baseline does not run on it.
    """

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._log: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                while self._log and now - self._log[0] >= self.period:
                    self._log.popleft()
                if len(self._log) < self.limit:
                    self._log.append(now)
                    return
                await asyncio.sleep(self._log[0] + self.period - now)


class _Gate:
    """What the baselines add around each call: an in-flight cap, a submission limiter.

    Spec keys (API seconds, scaled by ``scale``): ``concurrency`` (a semaphore around the
    whole call), ``aiolimiter`` ``[R, W]`` (a leaky bucket before it), ``window``
    ``[R, W, margin]`` (a strict sliding window before it).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        import aiolimiter

        scale = spec.get("scale", 1.0)
        concurrency = spec.get("concurrency")
        self.semaphore = asyncio.Semaphore(concurrency) if concurrency else None
        self.limiter: Any = None
        if spec.get("aiolimiter"):
            limit, period = spec["aiolimiter"]
            self.limiter = aiolimiter.AsyncLimiter(limit, period * scale)
        elif spec.get("window"):
            limit, period, margin = spec["window"]
            self.limiter = _SlidingWindow(limit, (period + margin) * scale)

    def slot(self) -> AbstractAsyncContextManager[Any]:
        return self.semaphore if self.semaphore is not None else nullcontext()

    async def call(self, make: Callable[[], Awaitable[Any]]) -> Any:
        async with self.slot():
            if self.limiter is not None:
                await self.limiter.acquire()
            return await make()


class Unfinished(Exception):
    """A call still running at the spec's ``deadline_s`` (real seconds); it was cancelled."""


async def _gather(
    n: int, gate: _Gate, one: Callable[[int], Awaitable[Any]], deadline: float | None = None
) -> list[Any | BaseException]:
    tasks = [asyncio.ensure_future(gate.call(lambda i=i: one(i))) for i in range(n)]
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    await asyncio.wait(tasks)
    return [
        Unfinished() if task in pending else (task.exception() or task.result()) for task in tasks
    ]


def _ours_client(spec: dict[str, Any]) -> Any:
    from fashn_async import AsyncFashn, Limits, Polling

    scale = spec.get("scale", 1.0)
    kind = spec.get("limits", "default")
    if kind == "default":
        limits = Limits().scaled(scale)
    elif kind == "no_in_flight":
        limits = Limits(in_flight=None).scaled(scale)
    elif kind == "naive":  # submissions left to aiolimiter; the status budget stays on
        limits = Limits(submit=None, in_flight=None).scaled(scale)
    elif kind == "unlimited":
        limits = Limits.unlimited()
    else:
        raise ValueError(f"unknown limits {kind!r}")
    polling = spec.get("polling")
    policy = Polling(**{**polling, "prior": tuple(polling["prior"])}) if polling else None
    return AsyncFashn(
        base_url=spec["url"],
        limits=limits,
        polling=policy or Polling().scaled(scale),
        max_connections=spec.get("max_connections", 100),
    )


async def _run_ours(spec: dict[str, Any], out: dict[str, Any]) -> list[Any]:
    from fashn_async import ModelRequest

    n = spec["n"]
    gate = _Gate(spec)
    async with _ours_client(spec) as client:

        async def one(index: int) -> Any:
            request = ModelRequest(model_name="tryon-v1.6", inputs=_inputs(spec, index))
            return await client.run(request)

        return await _measured(out, lambda: _gather(n, gate, one, spec.get("deadline_s")))


async def _run_ours_batch(spec: dict[str, Any], out: dict[str, Any]) -> list[Any]:
    from fashn_async import ModelRequest

    n = spec["n"]
    checkpoints = max(int(spec.get("rss_checkpoints", 10)), 1)
    every = max(n // checkpoints, 1)
    rss_trace: list[tuple[int, int]] = []
    out["rss_trace"] = rss_trace

    def requests() -> Iterator[ModelRequest]:  # lazy: one pair at a time
        for index in range(n):
            yield ModelRequest(model_name="tryon-v1.6", inputs=_inputs(spec, index))

    async with _ours_client(spec) as client:

        async def drive() -> list[Any]:
            outcomes: list[Any] = []  # kept tiny: a count per kind, not the results
            counts: Counter[str] = Counter()
            finished = 0
            async for result in client.batch(requests()):
                counts["completed" if result.ok else type(result.error).__name__] += 1
                finished += 1
                if finished % every == 0:
                    rss_trace.append((finished, _rss()))
            outcomes.append(counts)
            return outcomes

        return await _measured(out, drive)


async def _run_official(spec: dict[str, Any], out: dict[str, Any]) -> list[Any]:
    import fashn

    n = spec["n"]
    gate = _Gate(spec)
    poll_ms = int(spec["poll_ms"])
    async with fashn.AsyncFashn(base_url=spec["url"]) as client:

        async def one(index: int) -> Any:
            return await client.predictions.subscribe(
                model_name="tryon-v1.6", inputs=_inputs(spec, index), poll_interval=poll_ms
            )

        return await _measured(out, lambda: _gather(n, gate, one, spec.get("deadline_s")))


async def _measured(out: dict[str, Any], work: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
    gc.collect()
    out["rss_before"] = _rss()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        return await work()
    finally:
        out["wall_s"] = time.perf_counter() - wall0
        out["cpu_s"] = time.process_time() - cpu0
        out["rss_after"] = _rss()


def _outcome(result: Any) -> str:
    if isinstance(result, BaseException):
        return type(result).__name__
    status = getattr(result, "status", None)  # the official SDK's subscribe() answer
    if status is not None and status != "completed":
        return f"status:{status}"
    return "completed"


async def _main(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"client": spec["client"], "api": spec.get("api", "gather")}
    runners = {
        ("ours", "gather"): _run_ours,
        ("naive", "gather"): _run_ours,
        ("ours", "batch"): _run_ours_batch,
        ("official", "gather"): _run_official,
    }
    runner = runners[(spec["client"], spec.get("api", "gather"))]
    profile = spec.get("profile")
    profiler: Any = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.001)
        profiler.start()
    results = await runner(spec, out)
    if profiler is not None:
        profiler.stop()
        out["_profile_text"] = profiler.output_text(unicode=True, show_all=False)
    counts: Counter[str] = Counter()
    for result in results:
        if isinstance(result, Counter):
            counts.update(result)
        else:
            counts[_outcome(result)] += 1
    out["outcomes"] = dict(counts)
    out["completed"] = counts.get("completed", 0)
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    out = asyncio.run(_main(spec))
    profile_text = out.pop("_profile_text", None)
    if profile_text is not None:
        path = Path(spec["profile"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(profile_text, encoding="utf-8")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    out["rss_peak"] = _peak_rss()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
