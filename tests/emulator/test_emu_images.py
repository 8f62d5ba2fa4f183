"""Input images: fetched from loopback only, checked with Pillow, drawn samples."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from emu_support import data_uri, flat_body, now, running
from PIL import Image

from fashn_async.testing import sample_image


@asynccontextmanager
async def serving(routes: dict[str, web.Response | str]) -> AsyncIterator[str]:
    """Serve fixed answers on 127.0.0.1; a str value redirects there. Yield the base URL."""

    async def handle(request: web.Request) -> web.StreamResponse:
        answer = routes.get(request.path)
        if answer is None:
            return web.Response(status=404, text="missing")
        if isinstance(answer, str):
            raise web.HTTPFound(answer)
        return web.Response(
            body=answer.body, status=answer.status, content_type=answer.content_type
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_url_images_fetched_from_own_samples() -> None:
    """URL inputs on loopback (the emulator's own samples) are fetched and used."""
    async with running() as api:
        model, garment = api.emu.sample_image_url("model"), api.emu.sample_image_url("garment")
        pid = await api.submit(flat_body(model_image=model, garment_image=garment))
        final = await api.until_terminal(pid)
        assert final["status"] == "completed"
        reply = await api.request("GET", final["output"][0], auth=False)
        assert Image.open(io.BytesIO(reply.raw)).size == (384, 512)
        assert api.emu.report().image_fetches == [model, garment]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/model.png",
        "https://8.8.8.8/model.png",
        "http://[2001:db8::1]/model.png",
        "http://localhost.example.com/model.png",
        "http://10.0.0.1/model.png",
    ],
)
async def test_non_loopback_url_fails_without_request(url: str) -> None:
    """A URL off loopback ends the prediction with ImageLoadError; nothing is fetched."""
    async with running(latency=(10.0, 10.0)) as api:
        start = now()
        pid = await api.submit(flat_body(model_image=url))
        await asyncio.sleep(0.5)
        assert (await api.status(pid)).json["status"] == "starting"
        await asyncio.sleep(start + 1.0 - now())
        reply = await api.status(pid)
        assert reply.json["status"] == "failed"
        error = reply.json["error"]
        assert error["name"] == "ImageLoadError"
        assert error["message"].startswith("Error loading model image: ")
        assert "loopback" in error["message"]
        assert api.emu.report().image_fetches == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"hello, not an image", "cannot identify image file"),
        (sample_image("garment", size=(32, 32))[:60], "image"),
    ],
    ids=["text", "truncated-png"],
)
async def test_unreadable_base64_fails_the_prediction(payload: bytes, reason: str) -> None:
    """Valid base64 that is not an image is accepted, then fails with ImageLoadError."""
    async with running() as api:
        pid = await api.submit(flat_body(garment_image=data_uri(payload)))
        final = await api.until_terminal(pid)
        assert final["status"] == "failed"
        assert final["error"]["name"] == "ImageLoadError"
        assert final["error"]["message"].startswith("Error loading garment image: ")
        assert reason in final["error"]["message"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/text", "The URL's Content-Type is not an image. Content-Type: text/plain"),
        ("/garbage", "cannot identify image file"),
        ("/missing", "HTTP 404"),
        ("/out", "loopback URLs only"),
    ],
)
async def test_unusable_loopback_urls_fail(path: str, expected: str) -> None:
    """Loopback URLs answering text, garbage, 404 or a redirect off loopback fail the image."""
    routes: dict[str, web.Response | str] = {
        "/text": web.Response(text="hello"),
        "/garbage": web.Response(body=b"\x89PNG garbage", content_type="image/png"),
        "/out": "http://example.com/model.png",
    }
    async with serving(routes) as base, running() as api:
        pid = await api.submit(flat_body(model_image=base + path))
        final = await api.until_terminal(pid)
        assert final["error"]["name"] == "ImageLoadError"
        assert final["error"]["message"].startswith("Error loading model image: ")
        assert expected in final["error"]["message"]
        assert api.emu.report().image_fetches == [base + path]


async def test_loopback_redirect_is_followed() -> None:
    """A redirect to another loopback URL is followed."""
    async with running() as api:
        routes: dict[str, web.Response | str] = {"/img": api.emu.sample_image_url("garment")}
        async with serving(routes) as base:
            pid = await api.submit(flat_body(garment_image=base + "/img"))
            assert (await api.until_terminal(pid))["status"] == "completed"
            assert api.emu.report().image_fetches == [
                base + "/img",
                api.emu.sample_image_url("garment"),
            ]


async def test_refused_connection_fails_the_image() -> None:
    """A loopback URL nobody listens on fails with ImageLoadError."""
    async with serving({}) as base:
        closed = base
    async with running() as api:
        pid = await api.submit(flat_body(model_image=closed + "/model.png"))
        final = await api.until_terminal(pid)
        assert final["error"]["name"] == "ImageLoadError"
        assert "could not fetch" in final["error"]["message"]


async def test_model_image_error_reported_first() -> None:
    """With both images unreadable, the model image is the one named."""
    async with running() as api:
        bad = data_uri(b"nope")
        pid = await api.submit(flat_body(model_image=bad, garment_image=bad))
        final = await api.until_terminal(pid)
        assert final["error"]["message"].startswith("Error loading model image: ")


@pytest.mark.parametrize("kind", ["model", "garment"])
def test_sample_image_is_a_png_of_the_size(kind: str) -> None:
    """sample_image draws a PNG of the requested size, the same for the same seed."""
    image = Image.open(io.BytesIO(sample_image(kind, size=(100, 150))))
    assert (image.format, image.size) == ("PNG", (100, 150))
    assert sample_image(kind, seed=1) == sample_image(kind, seed=1)
    assert sample_image(kind, seed=1) != sample_image(kind, seed=2)


def test_sample_image_draws_something() -> None:
    """The model sample is not blank: a figure stands on the background."""
    image = Image.open(io.BytesIO(sample_image("model"))).convert("RGB")
    assert len(image.getcolors(maxcolors=10_000) or ()) > 3
    garment = Image.open(io.BytesIO(sample_image("garment"))).convert("RGB")
    assert garment.getpixel((0, 0)) == (255, 255, 255)
    assert garment.getpixel((192, 300)) != (255, 255, 255)


@pytest.mark.parametrize(("kind", "size"), [("hat", (64, 64)), ("model", (8, 64))])
def test_sample_image_refuses_bad_arguments(kind: str, size: tuple[int, int]) -> None:
    """Unknown kinds and tiny sizes are refused."""
    with pytest.raises(ValueError, match="must"):
        sample_image(kind, size=size)
