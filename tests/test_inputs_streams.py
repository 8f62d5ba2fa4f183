"""File objects that stream: read until they end, never on the package's own threads."""

from __future__ import annotations

import asyncio
import io
import os
import random
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fashn_async import AsyncFashn, TryOnRequest, errors
from fashn_async._images import encode_image
from fashn_async._payload import prepare_request
from fashn_async._sources import MAX_BODY_BYTES, MAX_IMAGE_BYTES, OFFLOAD_BYTES, read_object
from fashn_async.testing import Emulator, EmulatorConfig
from fashn_async.testing._state import payload_digest

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="os.pipe reads that block")


def noise_png(size: tuple[int, int] = (64, 48)) -> bytes:
    """A PNG that compresses poorly, so it spans many stream chunks."""
    data = random.Random(size[0]).randbytes(size[0] * size[1] * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", size, data).save(out, format="PNG", compress_level=0)
    return out.getvalue()


IMAGE = noise_png()


async def sent_whole(emulator: Emulator) -> bool:
    """The one accepted submission is byte-exact the one made from ``IMAGE`` as bytes."""
    request = TryOnRequest(model_image=IMAGE, garment_image=IMAGE, category="tops")
    expected = payload_digest((await prepare_request(request)).body)
    (accepted,) = emulator.report().accepted
    return accepted.payload_digest == expected


def assert_nothing_sent(emulator: Emulator) -> None:
    """The emulator saw no submission, no 400 and no status call."""
    report = emulator.report()
    assert (report.accepted, report.bad_requests, report.status_calls_total) == ([], 0, 0)


class Trickle:
    """A blocking reader giving at most ``chunk`` bytes per call, as a raw socket does."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk, self.at = data, chunk, 0

    def read(self, size: int = -1) -> bytes:
        n = self.chunk if size < 0 else min(size, self.chunk)
        out = self.data[self.at : self.at + n]
        self.at += len(out)
        return out


class AsyncTrickle(Trickle):
    """The same, with ``read()`` a coroutine (an upload object of a web framework)."""

    async def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        return Trickle.read(self, size)


@settings(max_examples=25, deadline=None)
@given(chunk=st.integers(64, 4096), kind=st.sampled_from([Trickle, AsyncTrickle]))
async def test_readers_giving_a_chunk_at_a_time_are_read_to_the_end(chunk: int, kind: Any) -> None:
    """Whatever the chunk size, sync or async, the whole image is read (not its first chunk)."""
    assert await read_object("model_image", kind(IMAGE, chunk)) == IMAGE


async def test_an_asyncio_stream_fed_in_chunks_is_submitted_whole(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """An asyncio.StreamReader fed piece by piece is read until EOF and sent."""
    reader = asyncio.StreamReader()

    async def feed() -> None:
        for start in range(0, len(IMAGE), 1000):
            reader.feed_data(IMAGE[start : start + 1000])
            await asyncio.sleep(0.01)
        reader.feed_eof()

    feeding = asyncio.ensure_future(feed())
    await client.submit(model_image=reader, garment_image=IMAGE, category="tops")
    await feeding
    assert await sent_whole(emulator)


async def test_an_aiohttp_upload_streamed_in_chunks_is_submitted_whole(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """A handler passing ``request.content`` of a chunked upload sends the whole image."""
    results: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        prediction = await client.submit(
            model_image=request.content, garment_image=IMAGE, category="tops"
        )
        results.append(prediction.id)
        return web.Response(text=prediction.id)

    app = web.Application()
    app.router.add_post("/upload", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(IMAGE), 777):
            yield IMAGE[start : start + 777]
            await asyncio.sleep(0.01)

    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/upload", data=body()) as response:
                assert response.status == 200, await response.text()
    finally:
        await runner.cleanup()
    assert results
    assert await sent_whole(emulator)


async def test_a_stream_longer_than_the_cap_is_refused_unsent(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """A reader that never ends is cut at the cap and refused; nothing is sent."""

    class Endless:
        def read(self, size: int = -1) -> bytes:
            return bytes(min(size, 2**22))

    with pytest.raises(errors.ImageInputError, match=r"model_image: the image is over 50 MiB"):
        await client.submit(model_image=Endless(), garment_image=IMAGE, category="tops")
    assert_nothing_sent(emulator)


class StuckPipe:
    """The read end of a pipe nobody writes to: ``read()`` blocks until it is closed."""

    def __init__(self) -> None:
        self.fd, self.writer = os.pipe()
        self.returned = threading.Event()

    def read(self, size: int = -1) -> bytes:
        try:
            return os.read(self.fd, size if size > 0 else 65536)
        finally:
            self.returned.set()

    def release(self) -> None:
        os.close(self.writer)  # the blocked read() gives b"" and its thread is free
        assert self.returned.wait(10)
        os.close(self.fd)


@posix_only
async def test_blocked_readers_never_stall_the_package_workers(
    emulator: Emulator, client: AsyncFashn, tmp_path: Path
) -> None:
    """Two readers blocked forever, timed out, leave a big Path image free to be sent."""
    pipes = [StuckPipe(), StuckPipe()]
    big = tmp_path / "big.png"
    big.write_bytes(noise_png((400, 400)))
    assert big.stat().st_size >= OFFLOAD_BYTES  # read in the package's worker threads
    try:
        for pipe in pipes:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.submit(model_image=pipe, garment_image=IMAGE, category="tops")
        assert_nothing_sent(emulator)
        async with asyncio.timeout(10):
            await client.submit(model_image=big, garment_image=big, category="tops")
    finally:
        for pipe in pipes:
            pipe.release()
    assert len(emulator.report().accepted) == 1


async def test_a_failing_or_closed_reader_is_an_image_input_error(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """read() raising OSError/RuntimeError, or a closed file, names the field; nothing sent."""

    class Broken:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def read(self, size: int = -1) -> bytes:
            raise self.exc

    closed = io.BytesIO(IMAGE)
    closed.close()
    cases: list[tuple[Any, str]] = [
        (Broken(OSError(5, "Input/output error")), "read\\(\\) failed: OSError"),
        (Broken(RuntimeError("boom")), "read\\(\\) failed: RuntimeError: boom"),
        (closed, "the file object is closed"),
    ]
    for source, message in cases:
        with pytest.raises(errors.ImageInputError, match="garment_image: .*" + message):
            await client.submit(model_image=IMAGE, garment_image=source, category="tops")
    assert_nothing_sent(emulator)


async def test_the_size_shown_is_the_files_real_size(tmp_path: Path) -> None:
    """A file far over the cap is reported at its size (GiB/TiB), not at the cap."""
    path = tmp_path / "huge.png"
    with path.open("wb") as fh:
        fh.truncate(2**40)  # sparse: no disk used
    with pytest.raises(errors.ImageInputError, match=r"huge.png: the image is 1\.0 TiB"):
        await encode_image("model_image", path)
    with path.open("wb") as fh:
        fh.truncate(MAX_IMAGE_BYTES + 10 * 2**20)
    with pytest.raises(errors.ImageInputError, match=r"the image is 60\.0 MiB"):
        await encode_image("model_image", path)


async def test_a_directory_error_names_the_field_once(tmp_path: Path) -> None:
    """The message for a directory is not prefixed twice."""
    with pytest.raises(errors.ImageInputError) as caught:
        await encode_image("model_image", tmp_path)
    assert str(caught.value).count("model_image") == 1
    assert "is a directory" in str(caught.value)


def big_png(megapixels: float) -> bytes:
    """An uncompressed noise PNG of about ``3 * megapixels`` MB."""
    side = int((megapixels * 1e6) ** 0.5)
    return noise_png((side, side))


async def test_a_body_over_the_api_limit_is_refused_before_sending(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """Two 9 MB images make a 24 MiB body: refused naming size and limit; 0 requests."""
    image = big_png(3.0)
    assert 3 * len(image) // 2**20 < MAX_IMAGE_BYTES  # each image alone is fine
    with pytest.raises(errors.InvalidRequestError, match=r"would be 2\d\.\d MiB") as caught:
        await client.submit(model_image=image, garment_image=image, category="tops")
    assert "at most 16 MiB" in caught.value.message
    assert "prepare_images=True" in caught.value.message
    assert_nothing_sent(emulator)


async def test_a_body_just_under_the_limit_is_accepted_by_the_emulator(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """The client's limit is the emulator's: a body just under it is accepted there."""
    assert EmulatorConfig().max_body_bytes == MAX_BODY_BYTES
    image = big_png(4.15)  # about 12.4 MB: 15.8 MiB as base64
    request = TryOnRequest(model_image=image, garment_image=IMAGE, category="tops")
    size = len((await prepare_request(request)).payload)
    assert MAX_BODY_BYTES - 2**20 < size <= MAX_BODY_BYTES
    await client.submit(request)
    assert len(emulator.report().accepted) == 1
