"""Image inputs become URLs or sniffed data URIs without blocking; bad ones fail locally."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from helpers import PNG
from hypothesis import given
from hypothesis import strategies as st

from fashn_async._images import encode_image, sniff_mime
from fashn_async._outputs import output_filename
from fashn_async.errors import ImageInputError

JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
WEBP_HEAD = b"RIFF\x00\x00\x00\x00WEBPVP8 "


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (JPEG_HEAD, "image/jpeg"),
        (WEBP_HEAD, "image/webp"),
        (b"GIF89a....", "image/gif"),
        (b"BM......", "image/bmp"),
        (b"\x00\x00\x00\x1cftypavif", "image/avif"),
        # HEIF's generic brand: the compatible brands tell AVIF from HEIC; and HEVC's
        # brands for image sequences (an iPhone's burst, say) are HEIC too.
        (b"\x00\x00\x00\x20ftypmif1\x00\x00\x00\x00avifmif1miafMA1B", "image/avif"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"\x00\x00\x00\x18ftyphevc\x00\x00\x00\x00msf1hevc", "image/heic"),
        (b"\x00\x00\x00\x10ftypmif1\x00\x00\x00\x00avif", "image/heic"),  # (past its box)
        (b"hello world", None),
        (b"", None),
    ],
)
def test_sniff(data: bytes, mime: str | None) -> None:
    """The MIME type comes from the bytes' signature, not from a name."""
    assert sniff_mime(data) == mime


async def test_url_passes_through() -> None:
    """An http(s) URL is sent as given."""
    assert (
        await encode_image("f", "https://example.invalid/a.png") == b"https://example.invalid/a.png"
    )


async def test_path_bytes_and_file_become_data_uris(tmp_path: Path) -> None:
    """Paths, bytes and binary files are read and sent as data URIs of the sniffed type."""
    path = tmp_path / "photo.bin"  # the name says nothing; the bytes do
    path.write_bytes(PNG)
    expected = b"data:image/png;base64," + base64.b64encode(PNG)
    assert await encode_image("f", path) == expected
    assert await encode_image("f", PNG) == expected
    assert await encode_image("f", io.BytesIO(PNG)) == expected


async def test_data_uri_type_is_corrected() -> None:
    """A data URI labelled with the wrong type is re-labelled from its bytes."""
    wrong = "data:image/jpeg;base64," + base64.b64encode(PNG).decode()
    assert (await encode_image("f", wrong)).startswith(b"data:image/png;base64,")


async def test_missing_file(tmp_path: Path) -> None:
    """A missing file fails locally, naming the field and the path."""
    with pytest.raises(ImageInputError, match=r"garment_image: no such file"):
        await encode_image("garment_image", tmp_path / "nope.png")


async def test_not_an_image(tmp_path: Path) -> None:
    """A file that is not an image fails locally."""
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(ImageInputError, match="not an image"):
        await encode_image("model_image", path)


async def test_text_file_object_refused() -> None:
    """A text-mode file object is refused with a clear message."""
    with pytest.raises(ImageInputError, match="text mode; open it with 'rb'"):
        await encode_image("model_image", io.StringIO("x"))  # type: ignore[arg-type]


@given(st.binary(max_size=64))
def test_sniff_never_crashes(data: bytes) -> None:
    """Any bytes get an answer, never an exception."""
    assert sniff_mime(data) in {
        None,
        *{"image/" + t for t in ["png", "jpeg", "gif", "bmp", "tiff", "webp", "avif", "heic"]},
    }


def test_output_filenames() -> None:
    """Output names are stable and carry the right extension."""
    assert output_filename("row1", 0, "http://h/x/output_0.png") == "row1_0.png"
    assert output_filename("row1", 1, "http://h/x/out", "image/jpeg") == "row1_1.jpg"
    assert output_filename("r", 2, "data:image/webp;base64,AAAA") == "r_2.webp"


async def test_data_uri_payload_is_sent_as_given() -> None:
    """A valid data URI keeps its base64 text; only the type label may change."""
    payload = base64.b64encode(PNG).decode()
    assert await encode_image("f", "data:image/png;base64," + payload) == (
        b"data:image/png;base64," + payload.encode()
    )
    with pytest.raises(ImageInputError, match="invalid base64"):
        await encode_image("f", "data:image/png;base64," + payload[:-2] + "!!")


async def test_large_payloads_encode_the_same_off_the_loop() -> None:
    """Bytes above the offload threshold are encoded in the executor, with the same result."""
    from fashn_async._sources import OFFLOAD_BYTES

    big = PNG + bytes(OFFLOAD_BYTES)
    assert await encode_image("f", big) == b"data:image/png;base64," + base64.b64encode(big)
