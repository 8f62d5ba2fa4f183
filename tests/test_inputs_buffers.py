"""Odd buffers and readers: every shape of memoryview, a reader that reuses its buffer or
raises, long strings shown in constant time, and whole-image scans made a window at a time."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import PNG
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_async import _sources, _structure, errors
from fashn_async._images import encode_image
from fashn_async._redact import LONGEST_SHOWN, shown_url


def _sent(uri: bytes | bytearray) -> bytes:
    return base64.b64decode(bytes(uri).split(b",", 1)[1])


def _views() -> list[tuple[str, Any]]:
    """(name, value) for memoryviews of PNG's bytes in every shape that holds them."""
    size = len(PNG)
    padded = PNG + b"\0" * (-size % 8)
    return [
        ("flat", memoryview(PNG)),
        ("2-D rows", memoryview(PNG).cast("B", (1, size))),
        ("signed", memoryview(PNG).cast("b")),
        ("8-byte items", memoryview(padded).cast("Q")),
        ("bytearray 2-D", memoryview(bytearray(PNG)).cast("B", (size, 1))),
    ]


@pytest.mark.parametrize(("name", "value"), _views(), ids=[n for n, _ in _views()])
async def test_a_memoryview_of_any_shape_sends_its_bytes(name: str, value: Any) -> None:
    """A memoryview is read byte by byte whatever its shape or item size (a 2-D view's
    ``[:32]`` is 32 rows, not 32 bytes)."""
    sent = _sent(await encode_image("model_image", value))
    assert sent == bytes(memoryview(value).cast("B"))[: len(sent)]
    assert sent.startswith(PNG)


@pytest.mark.parametrize("kind", ["released", "not contiguous", "0-dimensional"])
async def test_an_unreadable_memoryview_is_an_image_input_error(kind: str) -> None:
    """A released or non-contiguous memoryview, or a 0-dimensional one (one byte, read as
    such): ImageInputError naming the field, never a bare TypeError or ValueError."""
    view = memoryview(PNG + PNG)
    if kind == "released":
        view.release()
    elif kind == "not contiguous":
        view = view[::2]
    else:
        view = memoryview(b"x").cast("B", ())
    expected = (
        "model_image: the data is not an image"
        if kind == "0-dimensional"
        else ("model_image: the memoryview cannot be read as bytes")
    )
    with pytest.raises(errors.ImageInputError, match=expected):
        await encode_image("model_image", view)


async def test_a_reader_that_reuses_its_buffer_sends_the_right_image() -> None:
    """Each chunk a reader gives is copied when read: a reader that fills one buffer again
    on every read() still sends the image it read."""

    class Reusing:
        def __init__(self) -> None:
            self.buffer = bytearray(64)
            self.offset = 0

        def read(self, size: int = -1) -> memoryview:
            chunk = PNG[self.offset : self.offset + 64]
            self.offset += len(chunk)
            self.buffer[: len(chunk)] = chunk
            return memoryview(self.buffer)[: len(chunk)]

    assert _sent(await encode_image("model_image", Reusing())) == PNG


@pytest.mark.parametrize(
    "reader",
    [
        pytest.param(lambda size=-1: (_ for _ in ()).throw(TypeError("boom")), id="TypeError"),
        pytest.param(lambda size=-1: memoryview(PNG)[::2], id="non-contiguous chunk"),
    ],
)
async def test_a_readers_own_failure_is_reported_not_retried(reader: Any) -> None:
    """A read(size) that raises its own TypeError is the reader's error (not taken for a
    read() without a size), and a chunk that is no bytes is refused; both name the field."""

    class Reader:
        read = staticmethod(reader)

    with pytest.raises(errors.ImageInputError, match="model_image") as info:
        await encode_image("model_image", Reader())
    assert "gave no data" not in str(info.value)


async def test_a_path_like_whose_fspath_fails_names_the_field() -> None:
    """A PathLike whose __fspath__ raises: ImageInputError naming the field."""

    class Broken:
        def __fspath__(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(errors.ImageInputError, match="model_image: the path could not be"):
        await encode_image("model_image", Broken())  # type: ignore[arg-type]


@given(st.integers(min_value=LONGEST_SHOWN + 1, max_value=4 * LONGEST_SHOWN))
@settings(max_examples=20, deadline=None)
def test_a_long_text_is_shown_by_its_scheme_and_length_only(size: int) -> None:
    """Text longer than LONGEST_SHOWN is never read character by character: its scheme
    and length are shown, and nothing of a password that may lie in it."""
    text = ("https://user:" + "secret" * size)[:size]
    assert shown_url(text) == f"https:<{size} characters>"


async def test_a_bare_base64_string_is_refused_at_once(tmp_path: Path) -> None:
    """An image's base64 without ``data:`` (a common slip) is refused as a URL too long,
    and the message does not hold it (the check reads a bounded part of it)."""
    text = base64.b64encode(PNG * 4000).decode()
    with pytest.raises(errors.ImageInputError, match="longer than 8192") as info:
        await encode_image("model_image", text)
    assert len(str(info.value)) < 400


@given(st.binary(max_size=64), st.integers(min_value=2, max_value=9))
@settings(deadline=None)
def test_scans_from_the_end_match_whole_buffer_scans(data: bytes, window: int) -> None:
    """The windowed scans (a few bytes per window here) give what one whole-buffer call
    gives: the last non-zero byte, and whether FF D9 lies at or after a position."""
    real, pause = _structure._WINDOW, _structure.let_go
    _structure._WINDOW, _structure.let_go = window, lambda: None  # no 0.5 ms per window
    try:
        kept = data.rstrip(b"\0")
        assert _structure._last_nonzero(memoryview(data)) == (kept[-1] if kept else None)
        for start in range(len(data) + 1):
            expected = data.rfind(b"\xff\xd9", start) >= 0
            assert _structure._has_end_marker(data, start) is expected
    finally:
        _structure._WINDOW, _structure.let_go = real, pause


def test_loops_in_many_threads_share_one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """However many threads ask for the worker at once, one is made."""
    monkeypatch.setattr(_sources, "_executor", None)
    barrier = threading.Barrier(8)
    made: list[object] = []

    def ask() -> None:
        barrier.wait()
        made.append(_sources._cpu_executor())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(executor) for executor in made}) == 1
