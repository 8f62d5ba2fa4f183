"""Shared helpers of the batch tests: distinct requests, and what the emulator saw."""

from __future__ import annotations

import asyncio

from fashn_async import AsyncFashn, TryOnRequest
from fashn_async.testing import Emulator


def distinct(emulator: Emulator, n: int) -> list[TryOnRequest]:
    """n valid try-ons of the emulator's samples with distinct payloads (one seed each),
    so that a re-submission shows up in the report as a duplicate payload."""
    return [
        TryOnRequest(
            model_image=emulator.sample_image_url("model"),
            garment_image=emulator.sample_image_url("garment"),
            category="tops",
            seed=i,
        )
        for i in range(n)
    ]


def assert_each_submitted_once(emulator: Emulator, n: int) -> None:
    """The emulator accepted exactly n submissions, no payload twice."""
    report = emulator.report()
    assert len(report.accepted) == n, f"{len(report.accepted)} submissions for {n} items"
    assert report.duplicates == 0, f"{report.duplicates} payload(s) submitted again"


def assert_idle(client: AsyncFashn, emulator: Emulator) -> None:
    """Nothing runs on the server, no slot or grant is held, no batch is open."""
    report = emulator.report()
    assert report.in_progress == 0, f"left running on the server: {report.in_progress}"
    engine = client._engine
    assert engine.in_flight.in_use == 0
    assert "running=0 held=0" in repr(engine.in_flight), repr(engine.in_flight)
    if engine.submit_limiter is not None:
        assert engine.submit_limiter.waiting == 0
        assert "unanswered=0" in repr(engine.submit_limiter)
    assert len(client._batches) == 0


async def settle(client: AsyncFashn, *, within: float) -> float:
    """Wait until every in-flight slot is back (each remote cancel answered); return the
    loop seconds it took, failing if it takes longer than ``within``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while client._engine.in_flight.in_use or len(client._batches):
        assert loop.time() - start <= within, f"still busy after {within} s: {client!r}"
        await asyncio.sleep(0.01)
    return loop.time() - start
