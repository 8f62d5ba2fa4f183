"""The emulator's routes: auth, statuses over time, outputs, cancel, credits, shapes."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from emu_support import GARMENT, MODEL, current_body, flat_body, now, open_png, running
from PIL import Image

from fashn_async._names import HTTP_ERROR_CODES

ROUTES = [
    ("POST", "/v1/run"),
    ("GET", "/v1/status/some-id"),
    ("GET", "/v1/cancel/some-id"),
    ("GET", "/v1/credits"),
    ("GET", "/_emulator/report"),
    ("POST", "/_emulator/reset"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", "Basic fashn-test-key", "fashn-test-key", "Bearer "],
)
async def test_auth_refused(method: str, path: str, authorization: str | None) -> None:
    """A missing or wrong bearer token is a 401 UnauthorizedAccess in the current shape."""
    async with running() as api:
        headers = {} if authorization is None else {"Authorization": authorization}
        reply = await api.request(method, path, auth=False, headers=headers, body=flat_body())
        assert reply.status == 401
        assert reply.json["error"] == "UnauthorizedAccess"
        assert HTTP_ERROR_CODES[reply.json["error"]] == 401
        assert reply.json["message"]
        assert api.emu.report().accepted == []


async def test_auth_scheme_case_insensitive() -> None:
    """The Bearer scheme is matched case-insensitively, the key exactly."""
    async with running() as api:
        reply = await api.request(
            "GET", "/v1/credits", auth=False, headers={"Authorization": "bearer fashn-test-key"}
        )
        assert reply.status == 200


async def test_unknown_route_and_method() -> None:
    """Unknown paths are 404 NotFound and wrong methods 405, both as JSON."""
    async with running() as api:
        missing = await api.request("GET", "/v1/nothing-here")
        assert (missing.status, missing.json["error"]) == (404, "NotFound")
        wrong = await api.request("GET", "/v1/run")
        assert wrong.status == 405
        assert wrong.json["error"] == "MethodNotAllowed"


@pytest.mark.parametrize("route", ["status", "cancel"])
async def test_unknown_id_is_404(route: str) -> None:
    """Status and cancel of an id never issued answer 404 NotFound."""
    async with running() as api:
        reply = await api.request("GET", f"/v1/{route}/no-such-id")
        assert reply.status == 404
        assert reply.json == {"error": "NotFound", "message": reply.json["message"]}
        assert "no-such-id" in reply.json["message"]


async def test_run_answers_id() -> None:
    """A valid submission answers 200 with a fresh id and a null error."""
    async with running() as api:
        first = await api.run(flat_body())
        second = await api.run(flat_body())
        assert first.status == 200
        assert set(first.json) == {"id", "error"}
        assert first.json["error"] is None
        assert first.json["id"] != second.json["id"]
        assert first.json["id"].endswith("-u1")


async def test_status_progression_over_latency() -> None:
    """Statuses go starting, in_queue, processing, completed at fixed fractions of latency."""
    async with running(latency=(8.0, 8.0)) as api:
        start = now()
        pid = await api.submit()
        seen = []
        for offset in (0.0, 0.79, 0.8, 1.99, 2.0, 7.99, 8.0, 100.0):
            await asyncio.sleep(start + offset - now())
            reply = await api.status(pid)
            seen.append(reply.json["status"])
        assert seen == [
            "starting",
            "starting",
            "in_queue",
            "in_queue",
            "processing",
            "processing",
            "completed",
            "completed",
        ]
        report = api.emu.report()
        assert report.terminal_at[pid] == pytest.approx(8.0)
        assert report.first_seen_terminal[pid] == pytest.approx(8.0)


async def test_status_running_body_shape() -> None:
    """A running prediction's status has id, status and a null error, no output."""
    async with running() as api:
        pid = await api.submit()
        reply = await api.status(pid)
        assert reply.json == {"id": pid, "status": "starting", "error": None}


async def test_latency_drawn_within_range_and_seeded() -> None:
    """Latencies fall within the configured range and repeat with the same seed."""

    async def terminal_times(seed: int) -> list[float]:
        async with running(latency=(5.0, 11.0), seed=seed, in_flight_limit=None) as api:
            ids = [await api.submit() for _ in range(5)]
            await asyncio.sleep(12)
            report = api.emu.report()
            return [
                report.terminal_at[pid] - entry.time
                for pid, entry in zip(ids, report.accepted, strict=True)
            ]

    first, again, other = await terminal_times(1), await terminal_times(1), await terminal_times(2)
    assert all(5.0 <= value <= 11.0 for value in first)
    assert first == pytest.approx(again)
    assert first != pytest.approx(other)


@pytest.mark.parametrize("num_samples", [1, 2, 4])
async def test_completed_outputs_are_pngs_on_the_cdn(num_samples: int) -> None:
    """A completed prediction lists num_samples PNG URLs served by the emulator's CDN."""
    async with running() as api:
        pid = await api.submit(flat_body(num_samples=num_samples))
        final = await api.until_terminal(pid)
        assert final["status"] == "completed"
        assert final["error"] is None
        assert len(final["output"]) == num_samples
        for index, url in enumerate(final["output"]):
            assert url == f"{api.emu.url}/cdn/{pid}/output_{index}.png"
            reply = await api.request("GET", url, auth=False)
            assert reply.status == 200
            assert reply.headers["Content-Type"] == "image/png"
            assert open_png(reply.raw).size == (48, 64)


async def test_completed_status_reports_credits_used() -> None:
    """A completed status carries x-fashn-credits-used equal to its generations."""
    async with running() as api:
        pid = await api.submit(flat_body(num_samples=3))
        await asyncio.sleep(11)
        reply = await api.status(pid)
        assert reply.json["status"] == "completed"
        assert reply.headers["x-fashn-credits-used"] == "3"


async def test_outputs_show_the_garment_and_vary_by_sample() -> None:
    """Outputs differ from the model image (garment drawn on) and from each other."""
    async with running() as api:
        pid = await api.submit(flat_body(num_samples=2))
        final = await api.until_terminal(pid)
        images = [
            open_png((await api.request("GET", url, auth=False)).raw) for url in final["output"]
        ]
        model = Image.open(io.BytesIO(base64.b64decode(MODEL.split(",", 1)[1]))).convert("RGB")
        assert images[0].convert("RGB").tobytes() != model.tobytes()
        assert images[0].tobytes() != images[1].tobytes()


async def test_jpeg_output_format() -> None:
    """output_format jpeg gives JPEG files on the CDN."""
    async with running() as api:
        pid = await api.submit(current_body(output_format="jpeg", num_samples=2))
        final = await api.until_terminal(pid)
        assert [url.rsplit("/", 1)[1] for url in final["output"]] == [
            "output_0.jpeg",
            "output_1.jpeg",
        ]
        reply = await api.request("GET", final["output"][0], auth=False)
        assert reply.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(reply.raw)).format == "JPEG"


@pytest.mark.parametrize(("output_format", "mime"), [("png", "image/png"), ("jpeg", "image/jpeg")])
async def test_return_base64_outputs_are_data_uris(output_format: str, mime: str) -> None:
    """return_base64 answers the outputs as data URIs, and nothing is put on the CDN."""
    async with running() as api:
        body = current_body(return_base64=True, num_samples=2, output_format=output_format)
        pid = await api.submit(body)
        final = await api.until_terminal(pid)
        assert len(final["output"]) == 2
        for uri in final["output"]:
            prefix, payload = uri.split(",", 1)
            assert prefix == f"data:{mime};base64"
            image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
            assert image.format == output_format.upper()
        cdn = await api.request("GET", f"/cdn/{pid}/output_0.png", auth=False)
        assert cdn.status == 404


async def test_cdn_unknown_and_unfinished_are_404() -> None:
    """The CDN answers 404 for unknown ids, unknown files and unfinished predictions."""
    async with running() as api:
        pid = await api.submit()
        assert (await api.request("GET", f"/cdn/{pid}/output_0.png", auth=False)).status == 404
        await api.until_terminal(pid)
        assert (await api.request("GET", f"/cdn/{pid}/output_0.png", auth=False)).status == 200
        assert (await api.request("GET", f"/cdn/{pid}/output_1.png", auth=False)).status == 404
        assert (await api.request("GET", "/cdn/nope/output_0.png", auth=False)).status == 404


async def test_cdn_outputs_expire_after_72_hours() -> None:
    """Output files leave the CDN 72 API hours after completion."""
    async with running(latency=(5.0, 5.0)) as api:
        pid = await api.submit()
        final = await api.until_terminal(pid)
        url = final["output"][0]
        await asyncio.sleep(72 * 3600 - 10)
        assert (await api.request("GET", url, auth=False)).status == 200
        await asyncio.sleep(10)
        assert (await api.request("GET", url, auth=False)).status == 404


async def test_cancel_running_prediction() -> None:
    """Canceling a running prediction answers canceled; it stays canceled."""
    async with running(latency=(10.0, 10.0)) as api:
        pid = await api.submit()
        await asyncio.sleep(3)
        reply = await api.request("GET", f"/v1/cancel/{pid}")
        assert reply.status == 200
        assert reply.json == {"id": pid, "status": "canceled", "error": None}
        await asyncio.sleep(20)
        assert (await api.status(pid)).json == {"id": pid, "status": "canceled", "error": None}
        report = api.emu.report()
        assert report.cancels == [pid]
        assert report.terminal_at[pid] == pytest.approx(3.0)
        assert report.credits_used == 0


async def test_cancel_terminal_prediction_answers_its_status() -> None:
    """Canceling an ended prediction changes nothing and answers its status as it is."""
    async with running() as api:
        pid = await api.submit()
        final = await api.until_terminal(pid)
        reply = await api.request("GET", f"/v1/cancel/{pid}")
        assert reply.json == final
        assert (await api.status(pid)).json == final


async def test_credits_body() -> None:
    """GET /v1/credits answers total, subscription and on_demand, less what was used."""
    async with running(credits=10) as api:
        before = await api.request("GET", "/v1/credits")
        assert before.json == {"credits": {"total": 10, "subscription": 10, "on_demand": 0}}
        await api.submit(flat_body(num_samples=3))
        after = await api.request("GET", "/v1/credits")
        assert after.json["credits"]["total"] == 7


@pytest.mark.parametrize(
    "body",
    [
        flat_body(),
        current_body(),
        current_body("tryon-max"),
        current_body("product-to-model", model_image=None, garment_image=None, product_image=MODEL),
        current_body("background-remove", model_image=None, garment_image=None, image=GARMENT),
        {"model_name": "model-create", "inputs": {"prompt": "a person"}},
    ],
    ids=[
        "flat",
        "tryon-v1.6",
        "tryon-max",
        "product-to-model",
        "background-remove",
        "model-create",
    ],
)
async def test_both_body_shapes_complete(body: dict[str, object]) -> None:
    """Flat v1 bodies and current bodies of every known model run to completion."""
    inputs = body.get("inputs")
    if isinstance(inputs, dict):
        body = {**body, "inputs": {k: v for k, v in inputs.items() if v is not None}}
    async with running() as api:
        pid = await api.submit(body)
        final = await api.until_terminal(pid)
        assert final["status"] == "completed"
        open_png((await api.request("GET", final["output"][0], auth=False)).raw)


async def test_sample_images_are_served() -> None:
    """The emulator serves its sample model and garment PNGs without auth."""
    async with running() as api:
        for kind in ("model", "garment"):
            reply = await api.request("GET", api.emu.sample_image_url(kind), auth=False)
            assert reply.status == 200
            assert open_png(reply.raw).size == (384, 512)
        assert (await api.request("GET", "/samples/other.png", auth=False)).status == 404


async def test_emulator_repr_shows_live_state() -> None:
    """The emulator's repr shows its URL and live prediction count."""
    async with running() as api:
        await api.submit()
        assert api.emu.url in repr(api.emu)
        assert "predictions=1" in repr(api.emu)
