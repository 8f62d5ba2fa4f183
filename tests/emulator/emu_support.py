"""Helpers for the emulator's tests: a running emulator and a plain aiohttp session.

The tests speak HTTP to the emulator over loopback with aiohttp only, never through the
SDK's client: the emulator is checked as an independent reading of the API.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from PIL import Image

from fashn_async.testing import Emulator, EmulatorConfig, sample_image

TERMINAL = frozenset({"completed", "failed", "canceled"})


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """Return ``data`` as a base64 data URI."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


#: Small input images as data URIs: quick to decode and draw on.
MODEL = data_uri(sample_image("model", size=(48, 64)))
GARMENT = data_uri(sample_image("garment", size=(48, 64)))


def flat_body(**fields: Any) -> dict[str, Any]:
    """Return a valid flat v1 body, with ``fields`` replacing or adding fields."""
    body: dict[str, Any] = {"model_image": MODEL, "garment_image": GARMENT, "category": "tops"}
    body.update(fields)
    return body


def current_body(model_name: str = "tryon-v1.6", **inputs: Any) -> dict[str, Any]:
    """Return a valid current-shape body, with ``inputs`` replacing or adding inputs."""
    values: dict[str, Any] = {"model_image": MODEL, "garment_image": GARMENT}
    values.update(inputs)
    return {"model_name": model_name, "inputs": values}


def open_png(data: bytes) -> Image.Image:
    """Decode ``data`` and check it is a PNG."""
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


class Reply:
    """An HTTP answer: status, headers, JSON body (or None), raw bytes."""

    def __init__(self, status: int, headers: Mapping[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json: Any = json.loads(raw)
        except ValueError:
            self.json = None

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.raw[:200]!r}>"


class Api:
    """A running emulator and an authenticated session to it."""

    def __init__(self, emu: Emulator, http: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.http = http
        self.auth = {"Authorization": f"Bearer {emu.api_key}"}

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request to the emulator and read the whole answer."""
        sent = dict(self.auth if auth else {})
        sent.update(headers or {})
        url = path if path.startswith("http") else self.emu.url + path
        async with self.http.request(
            method, url, json=body, data=data, headers=sent, params=params
        ) as response:
            return Reply(response.status, response.headers, await response.read())

    async def run(self, body: Any, **kwargs: Any) -> Reply:
        """POST ``body`` to /v1/run."""
        return await self.request("POST", "/v1/run", body=body, **kwargs)

    async def submit(self, body: Any = None) -> str:
        """Submit ``body`` (a valid flat body by default); return the prediction id."""
        reply = await self.run(flat_body() if body is None else body)
        assert reply.status == 200, reply
        assert reply.json["error"] is None
        return str(reply.json["id"])

    async def status(self, pid: str) -> Reply:
        """GET /v1/status/{pid}."""
        return await self.request("GET", f"/v1/status/{pid}")

    async def until_terminal(self, pid: str, every: float = 1.0) -> dict[str, Any]:
        """Poll the status of ``pid`` every ``every`` loop seconds until it has ended."""
        while True:
            reply = await self.status(pid)
            assert reply.status == 200, reply
            if reply.json["status"] in TERMINAL:
                return dict(reply.json)
            await asyncio.sleep(every)


@asynccontextmanager
async def running(
    config: EmulatorConfig | None = None, *, force_close: bool = False, **kwargs: Any
) -> AsyncIterator[Api]:
    """Run an emulator configured by ``config`` or ``kwargs``; yield an Api on it."""
    if config is None:
        config = EmulatorConfig(**kwargs)
    connector = aiohttp.TCPConnector(force_close=force_close)
    async with (
        Emulator(config) as emu,
        aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        ) as http,
    ):
        yield Api(emu, http)


def now() -> float:
    """Return the running loop's time (fast-forwarded under looptime)."""
    return asyncio.get_running_loop().time()
