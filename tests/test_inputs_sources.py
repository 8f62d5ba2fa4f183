"""Image sources: regular files only, size-capped, whole images, async readers, clear hints."""

from __future__ import annotations

import base64
import io
import os
import random
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import PNG
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fashn_async import AsyncFashn, TryOnRequest, errors
from fashn_async._images import encode_image, image_file_problem
from fashn_async._sources import MAX_IMAGE_BYTES
from fashn_async._structure import image_problem
from fashn_async.testing import Emulator

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, sockets, /dev/zero")


def assert_nothing_sent(emulator: Emulator) -> None:
    """The emulator saw no submission, no 400 and no status call."""
    report = emulator.report()
    assert (report.accepted, report.bad_requests, report.status_calls_total) == ([], 0, 0)


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """``image`` saved in ``fmt`` by Pillow."""
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def noise(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """A deterministic image that compresses poorly, so cuts land inside the pixel data."""
    data = random.Random(size[0] * 7 + len(mode)).randbytes(size[0] * size[1] * len(mode))
    return Image.frombytes(mode, size, data)


VALID = {
    "png": encoded(noise(), "PNG"),
    "png-rgba": encoded(noise(mode="RGBA"), "PNG"),
    "jpeg": encoded(noise(), "JPEG", quality=90),
    "jpeg-progressive": encoded(noise(), "JPEG", progressive=True),
    "gif": encoded(noise().convert("P"), "GIF"),
    "webp": encoded(noise(), "WEBP"),
    "bmp": encoded(noise(), "BMP"),
    "tiff": encoded(noise(), "TIFF"),
}


@pytest.mark.parametrize("kind", VALID)
def test_whole_images_pass_the_structural_check(kind: str) -> None:
    """Every format Pillow writes passes the cheap structural check."""
    assert image_problem(VALID[kind]) is None


MAGIC_ONLY = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg": b"\xff\xd8\xff",
    "gif": b"GIF89a",
    "webp": b"RIFF\x00\x00\x00\x00WEBP",
    "bmp": b"BM",
    "tiff": b"II*\x00",
    "avif": b"\x00\x00\x00\x1cftypavif",
}


@pytest.mark.parametrize("kind", MAGIC_ONLY)
async def test_magic_bytes_only_is_refused_in_every_form(tmp_path: Path, kind: str) -> None:
    """A file holding only an image's signature is refused as a path, bytes or data URI."""
    data = MAGIC_ONLY[kind]
    path = tmp_path / "magic.img"
    path.write_bytes(data)
    uri = f"data:image/{kind};base64," + base64.b64encode(data + b"\0" * (-len(data) % 3)).decode()
    for value in (path, data, uri):
        with pytest.raises(errors.ImageInputError, match="model_image: .*(cut short|no image)"):
            await encode_image("model_image", value)
    assert image_file_problem(path) is not None


@pytest.mark.parametrize("kind", ["png", "png-rgba", "jpeg", "jpeg-progressive", "webp", "bmp"])
async def test_truncated_images_are_refused(
    emulator: Emulator, client: AsyncFashn, tmp_path: Path, kind: str
) -> None:
    """An image cut short is refused before sending, and the dry-run check says so too."""
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(VALID[kind][: len(VALID[kind]) * 2 // 3])
    with pytest.raises(errors.ImageInputError, match="model_image: .*cut short"):
        await client.submit(model_image=path, garment_image=PNG, category="tops")
    assert "cut short" in (image_file_problem(path) or "")
    assert_nothing_sent(emulator)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["png", "jpeg", "jpeg-progressive"]), cut=st.floats(0, 1))
def test_every_strict_prefix_of_a_png_or_jpeg_is_refused(kind: str, cut: float) -> None:
    """Cutting a PNG or JPEG anywhere is caught: chunks, CRCs and markers are walked."""
    data = VALID[kind]
    assert image_problem(data[: int(cut * (len(data) - 1))]) is not None


def test_a_damaged_png_chunk_fails_its_crc() -> None:
    """One flipped byte inside a PNG's pixel data is caught by the chunk CRC."""
    data = bytearray(VALID["png"])
    data[len(data) // 2] ^= 0xFF
    assert "CRC" in (image_problem(bytes(data)) or "")


@posix_only
async def test_fifo_is_refused_without_hanging(
    emulator: Emulator, client: AsyncFashn, tmp_path: Path
) -> None:
    """A FIFO as an image path is refused at once (it is never opened for reading)."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(errors.ImageInputError, match=r"pipe.png is a FIFO \(named pipe\)"):
        await client.submit(model_image=fifo, garment_image=PNG, category="tops")
    assert "is a FIFO" in (image_file_problem(fifo) or "")  # the dry-run check too
    assert_nothing_sent(emulator)


@posix_only
async def test_devices_directories_and_sockets_are_refused(
    emulator: Emulator, client: AsyncFashn, tmp_path: Path
) -> None:
    """/dev/zero, a directory and a socket are each named for what they are, never read."""
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock_path))
        for path, kind in (
            (Path("/dev/zero"), "a character device"),
            (tmp_path, "a directory"),
            (sock_path, "a socket"),
        ):
            with pytest.raises(errors.ImageInputError, match=f"is {kind}, not a regular"):
                await client.submit(model_image=path, garment_image=PNG, category="tops")
    assert_nothing_sent(emulator)


async def test_images_over_the_cap_are_refused_in_every_form(
    emulator: Emulator, client: AsyncFashn, tmp_path: Path
) -> None:
    """Over 50 MiB as a file (sparse), bytes, file object or data URI: refused, not sent."""
    big = tmp_path / "big.png"
    with big.open("wb") as fh:
        fh.write(PNG)
        fh.truncate(MAX_IMAGE_BYTES + 1)
    data = PNG + bytes(MAX_IMAGE_BYTES)
    uri = "data:image/png;base64," + "A" * ((MAX_IMAGE_BYTES // 3 + 2) * 4)
    for value in (big, data, io.BytesIO(data), uri):
        with pytest.raises(errors.ImageInputError, match="50 MiB"):
            await client.submit(model_image=value, garment_image=PNG, category="tops")
    assert_nothing_sent(emulator)


class UploadFile:
    """What web frameworks hand you for an upload: ``read()`` is a coroutine."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    async def read(self, size: int = -1) -> bytes:
        return self._file.read(size)


class AwaitableRead:
    """A plain ``read()`` (no size) that returns an awaitable, as some wrappers do."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> Any:
        async def later() -> bytes:
            return self.data

        return later()


async def test_async_readers_are_awaited(emulator: Emulator, client: AsyncFashn) -> None:
    """Objects whose read() is a coroutine are awaited and sent like bytes."""
    expected = b"data:image/png;base64," + base64.b64encode(PNG)
    assert await encode_image("model_image", UploadFile(PNG)) == expected  # type: ignore[arg-type]
    assert await encode_image("model_image", AwaitableRead(PNG)) == expected  # type: ignore[arg-type]
    await client.submit(model_image=UploadFile(PNG), garment_image=PNG, category="tops")
    assert len(emulator.report().accepted) == 1


async def test_a_read_giving_text_or_nothing_is_refused() -> None:
    """read() giving str, None or nothing is an ImageInputError saying what to do."""

    class Nothing:
        def read(self, size: int = -1) -> None:
            return None

    with pytest.raises(errors.ImageInputError, match="text mode; open it with 'rb'"):
        await encode_image("model_image", io.StringIO("x"))  # type: ignore[arg-type]
    with pytest.raises(errors.ImageInputError, match="gave NoneType, not bytes"):
        await encode_image("model_image", Nothing())  # type: ignore[arg-type]
    with pytest.raises(errors.ImageInputError, match="gave no data"):
        await encode_image("model_image", io.BytesIO(b""))


LOCAL_PATHS = [
    "imgs/person0.jpg",
    "person0.jpg",
    "./person.png",
    "../x/y.webp",
    "~/photos/a.jpeg",
    "/abs/a.png",
    r"C:\photos\a.jpg",
    "imgs\\a.png",
]


@pytest.mark.parametrize("value", LOCAL_PATHS)
def test_a_local_path_string_says_to_pass_a_pathlib_path(value: str) -> None:
    """A str that looks like a file path is refused with the fix: pass pathlib.Path."""
    with pytest.raises(errors.ImageInputError, match=r"model_image: .*pass pathlib\.Path"):
        TryOnRequest(model_image=value, garment_image=PNG, category="tops")


BAD_URLS = [
    ("http://example.com:99999/a.png", "port must be a number from 1 to 65535"),
    ("http://example.com:0/a.png", "port must be a number from 1 to 65535"),
    ("http://example.com:-1/a.png", "port must be a number from 1 to 65535"),
    ("http://example.com:http/a.png", "port must be a number from 1 to 65535"),
    ("http://xn--/a.png", "not a valid domain name"),
    ("http://xn--a.com/a.png", "not a valid domain name"),
    ("http://a..b/a.png", "not a valid domain name"),
    ("http://-a.com/a.png", "not a valid domain name"),
    ("http://ex\u00adample.com/a.png", "not a valid domain name"),  # a soft hyphen
    ("http://" + "a" * 64 + ".com/a.png", "not a valid domain name"),
    ("http:///a.png", "names no host"),
    ("ftp://example.com/a.png", "scheme 'ftp' is not accepted"),
    ("file:///etc/passwd", "scheme 'file' is not accepted"),
    ("javascript:alert(1)", "scheme 'javascript' is not accepted"),
    ("http://exa mple.com/a.png", "white space"),
    ("http://example.com/a\x00.png", "control characters"),
    ("https://example.com/" + "a" * 9000, "longer than 8192"),
]


@pytest.mark.parametrize(("url", "why"), BAD_URLS)
async def test_bad_urls_are_refused_naming_why(
    emulator: Emulator, client: AsyncFashn, url: str, why: str
) -> None:
    """URLs with bad ports, IDNA-invalid hosts or other schemes fail before sending."""
    with pytest.raises(errors.ImageInputError, match="garment_image: ") as info:
        await client.submit(model_image=PNG, garment_image=url, category="tops")
    assert why in info.value.message
    assert "(got '" in info.value.message  # the value, shortened
    assert_nothing_sent(emulator)


@pytest.mark.parametrize(
    "url", ["https://例え.jp/a.png", "http://[::1]:8080/a.png", "http://cdn_1.example.com/a"]
)
def test_unusual_but_valid_urls_are_accepted(url: str) -> None:
    """IDN hosts, IPv6 literals and underscores in labels pass."""
    TryOnRequest(model_image=url, garment_image=PNG, category="tops")


async def test_a_large_body_is_sent_in_slices_and_arrives_whole(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """A 6 MiB image's body is written slice by slice and the emulator gets it byte-exact."""
    from fashn_async._payload import WRITE_SLICE, prepare_request
    from fashn_async.testing._state import payload_digest

    big = encoded(noise((1450, 1450)), "PNG", compress_level=0)
    assert len(big) > 20 * WRITE_SLICE
    request = TryOnRequest(model_image=big, garment_image=PNG, category="tops")
    expected = payload_digest((await prepare_request(request)).body)
    await client.submit(request)
    (accepted,) = emulator.report().accepted
    assert accepted.payload_digest == expected


def test_line_wrapped_base64_says_to_remove_the_line_breaks() -> None:
    """A data URI wrapped at 76 columns (as `base64` tools do) is refused with the fix."""
    payload = base64.encodebytes(VALID["png"]).decode()  # a newline every 76 characters
    with pytest.raises(errors.ImageInputError, match="white space or line breaks; remove"):
        TryOnRequest(
            model_image="data:image/png;base64," + payload, garment_image=PNG, category="tops"
        )


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8), st.integers(1, 2048))
def test_join_is_bytes_join(parts: list[bytes], slice_size: int) -> None:
    """The GIL-friendly join gives exactly ``b"".join``, whatever the slice size."""
    from fashn_async import _sources

    original = _sources.JOIN_SLICE
    _sources.JOIN_SLICE = slice_size  # type: ignore[misc]  # small slices, many steps
    try:
        assert _sources.join(parts) == b"".join(parts)
    finally:
        _sources.JOIN_SLICE = original  # type: ignore[misc]


def test_let_go_keeps_the_gil_on_the_loop_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between chunks a worker thread sleeps HAND_OVER, the GIL released; the loop's
    thread never does, nor the main thread with no loop (synchronous use)."""
    import asyncio
    import threading
    import time

    from fashn_async import _sources

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    worker = threading.Thread(target=_sources.let_go)  # no running loop there
    worker.start()
    worker.join()
    assert slept == [_sources.HAND_OVER]

    async def on_the_loop() -> None:
        _sources.let_go()

    asyncio.run(on_the_loop())
    _sources.let_go()  # the main thread, no loop running
    assert slept == [_sources.HAND_OVER]


def _big_png() -> bytes:
    """A PNG of about 200 KB (noise, so it does not compress): over OFFLOAD_BYTES."""
    pixels = random.Random(3).randbytes(260 * 260 * 3)
    return encoded(Image.frombytes("RGB", (260, 260), pixels), "PNG", compress_level=1)


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "small path", "chunked reader"])
async def test_no_whole_input_is_copied_or_read_on_the_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A bytearray or memoryview is copied, a Path read (even one whose size says it is
    small: a file still being written, /proc) and a reader's chunks joined in a thread,
    never on the loop's: each costs time that grows with the input."""
    import builtins
    import threading

    from fashn_async import _images, _sources

    data = _big_png()
    path = tmp_path / "photo.png"
    path.write_bytes(PNG if kind == "small path" else data)
    on_the_loop: list[str] = []

    def watch(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            big = any(
                isinstance(a, bytes | bytearray | memoryview) and memoryview(a).nbytes > 65536
                for a in args
            )
            if threading.current_thread() is threading.main_thread() and (big or name == "read"):
                on_the_loop.append(name)
            return real(*args, **kwargs)

        return call

    copy = watch("bytes", builtins.bytes)

    class Copying(type):
        """``bytes`` as the modules see it: a call is watched; isinstance is bytes'."""

        def __instancecheck__(cls, instance: object) -> bool:
            return isinstance(instance, builtins.bytes)

        def __call__(cls, *args: Any, **kwargs: Any) -> Any:
            return copy(*args, **kwargs)

    class WatchedBytes(metaclass=Copying):
        pass

    for module in (_images, _sources):  # a whole copy, by name, in either module
        monkeypatch.setattr(module, "bytes", WatchedBytes, raising=False)
    monkeypatch.setattr(_images, "join", watch("join", _sources.join))
    monkeypatch.setattr(_sources, "join", watch("join", _sources.join))
    monkeypatch.setattr(_images, "read_image_file", watch("read", _sources.read_image_file))

    class Chunked:
        def __init__(self) -> None:
            self.left = data

        def read(self, size: int = -1) -> bytes:
            chunk, self.left = self.left[:65536], self.left[65536:]
            return chunk

    value: Any = {
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "small path": path,
        "chunked reader": Chunked(),
    }[kind]
    uri = await encode_image("model_image", value)
    assert base64.b64decode(bytes(uri).split(b",", 1)[1]) == path.read_bytes()
    assert on_the_loop == []


def test_a_forked_child_gets_a_worker_of_its_own() -> None:
    """After the worker thread has run in a process, a child forked from it gets a new
    worker (the parent's thread does not exist in the child; its work used to wait
    forever)."""
    import asyncio
    import multiprocessing

    from fashn_async import _sources

    assert asyncio.run(_sources.in_worker(sum, [1, 2])) == 3  # the parent's worker runs

    context = multiprocessing.get_context("fork")
    child = context.Process(target=_use_the_worker_in_a_child)
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0


def _use_the_worker_in_a_child() -> None:
    import asyncio

    from fashn_async import _sources

    async def main() -> int:
        result: int = await asyncio.wait_for(_sources.in_worker(sum, [2, 3]), 10)
        return result

    os._exit(0 if asyncio.run(main()) == 5 else 1)
