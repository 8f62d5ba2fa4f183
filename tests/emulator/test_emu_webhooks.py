"""Webhooks: the final status is POSTed once a prediction ends, retried on failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from emu_support import flat_body, now, running

from fashn_async.testing import PredictionFault


class Receiver:
    """A webhook endpoint on 127.0.0.1 answering a scripted series of statuses."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.calls: list[tuple[float, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((now(), await request.json()))
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status, text="ok")


@asynccontextmanager
async def receiver(answers: list[int] | None = None) -> AsyncIterator[Receiver]:
    """Run a Receiver; yield it with its URL set."""
    hook = Receiver(list(answers or []))
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield hook
    finally:
        await runner.cleanup()


async def test_webhook_gets_final_status() -> None:
    """The final status JSON is POSTed once, when the prediction completes."""
    async with receiver() as hook, running(latency=(6.0, 6.0)) as api:
        start = now()
        reply = await api.run(flat_body(), params={"webhook_url": hook.url})
        pid = reply.json["id"]
        await asyncio.sleep(30)
        assert len(hook.calls) == 1
        when, payload = hook.calls[0]
        assert when == pytest.approx(start + 6.0)
        assert payload == (await api.status(pid)).json
        assert payload["status"] == "completed"
        (delivery,) = api.emu.report().webhook_deliveries
        assert (delivery.id, delivery.attempt, delivery.status) == (pid, 1, 200)
        assert delivery.delivered


async def test_webhook_retried_after_non_2xx() -> None:
    """Non-2xx answers are retried after 10 s, then 20 s, until one is 2xx."""
    async with receiver([500, 503, 204]) as hook, running(latency=(6.0, 6.0)) as api:
        start = now()
        await api.run(flat_body(), params={"webhook_url": hook.url})
        await asyncio.sleep(100)
        times = [when - start for when, _ in hook.calls]
        assert times == pytest.approx([6.0, 16.0, 36.0])
        deliveries = api.emu.report().webhook_deliveries
        assert [(d.attempt, d.status) for d in deliveries] == [(1, 500), (2, 503), (3, 204)]


async def test_webhook_gives_up_after_five_retries() -> None:
    """An unreachable receiver is tried six times in all over about five minutes."""
    async with receiver() as hook:
        url = hook.url
    async with running(latency=(6.0, 6.0)) as api:
        await api.run(flat_body(), params={"webhook_url": url})
        await asyncio.sleep(1000)
        deliveries = api.emu.report().webhook_deliveries
        assert [d.attempt for d in deliveries] == [1, 2, 3, 4, 5, 6]
        assert [d.time for d in deliveries] == pytest.approx([6, 16, 36, 76, 156, 306])
        assert all(d.status is None and d.error for d in deliveries)
        assert not any(d.delivered for d in deliveries)


async def test_webhook_on_cancel_and_failure() -> None:
    """Canceled and failed predictions are delivered too, with their final status."""
    fault = PredictionFault("PoseError", match="#pose")
    async with receiver() as hook, running(latency=(8.0, 8.0), faults=(fault,)) as api:
        start = now()
        params = {"webhook_url": hook.url}
        canceled = (await api.run(flat_body(), params=params)).json["id"]
        failing = flat_body(model_image=api.emu.sample_image_url("model") + "#pose")
        failed = (await api.run(failing, params=params)).json["id"]
        await asyncio.sleep(2)
        await api.request("GET", f"/v1/cancel/{canceled}")
        await asyncio.sleep(20)
        by_id = {payload["id"]: (when - start, payload) for when, payload in hook.calls}
        assert by_id[canceled][0] == pytest.approx(2.0)
        assert by_id[canceled][1]["status"] == "canceled"
        assert by_id[failed][0] == pytest.approx(8.0)
        assert by_id[failed][1]["error"]["name"] == "PoseError"


async def test_webhook_delays_scale_with_time() -> None:
    """time_scale shrinks the webhook retry delays too."""
    async with receiver([500]) as hook, running(latency=(6.0, 6.0), time_scale=0.1) as api:
        start = now()
        await api.run(flat_body(), params={"webhook_url": hook.url})
        await asyncio.sleep(10)
        assert [when - start for when, _ in hook.calls] == pytest.approx([0.6, 1.6])
