"""Optional image preparation (Pillow): oriented, downscaled, re-encoded, verified, cached."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fashn_async import AsyncFashn, ImagePreparation, TryOnRequest, errors
from fashn_async._images import encode_image
from fashn_async._payload import prepare_request
from fashn_async._structure import image_problem
from fashn_async.testing import Emulator


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """``image`` saved in ``fmt`` by Pillow."""
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def decoded(uri: bytes) -> tuple[str, Image.Image]:
    """The MIME type and image of a data URI made by the preparer."""
    header, _, payload = uri.partition(b",")
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    return header.decode().removeprefix("data:").removesuffix(";base64"), image


async def prepared(data: bytes, **options: Any) -> tuple[str, Image.Image]:
    """``data`` through a fresh preparer."""
    preparer = ImagePreparation(**options).preparer()
    return decoded(await preparer.data_uri("model_image", data))


async def test_exif_orientation_is_applied() -> None:
    """A phone photo stored landscape with Orientation=6 is sent upright (portrait)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    photo = encoded(Image.new("RGB", (300, 200), "red"), "JPEG", exif=exif.tobytes())
    mime, image = await prepared(photo)
    assert (mime, image.size) == ("image/jpeg", (200, 300))
    assert image.getexif().get(0x0112) is None  # metadata is not carried over


@pytest.mark.parametrize(
    ("size", "max_edge", "expected"),
    [
        ((4000, 1000), 2000, (2000, 500)),
        ((1000, 4000), 2000, (500, 2000)),
        ((640, 480), 2000, (640, 480)),
        ((3000, 2000), 600, (600, 400)),
    ],
)
async def test_longest_edge_is_capped_keeping_aspect(
    size: tuple[int, int], max_edge: int, expected: tuple[int, int]
) -> None:
    """Images past max_edge are downscaled with their aspect ratio; smaller ones are not."""
    _, image = await prepared(encoded(Image.new("RGB", size, "blue"), "PNG"), max_edge=max_edge)
    assert image.size == expected


async def test_transparency_keeps_png_and_opaque_becomes_jpeg_q95() -> None:
    """A PNG with see-through pixels stays PNG; an opaque one is sent as JPEG."""
    clear = Image.new("RGBA", (50, 50), (0, 0, 255, 255))
    clear.putpixel((0, 0), (0, 0, 0, 0))
    mime, image = await prepared(encoded(clear, "PNG"))
    assert (mime, image.mode, image.getpixel((0, 0))[3]) == ("image/png", "RGBA", 0)
    mime, image = await prepared(encoded(Image.new("RGBA", (50, 50), (9, 9, 9, 255)), "PNG"))
    assert (mime, image.format) == ("image/jpeg", "JPEG")


def _png_with_bad_pixels() -> bytes:
    """A PNG whose chunks and CRCs are whole but whose IDAT is not valid zlib data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"garbage!")
        + chunk(b"IEND", b"")
    )


async def test_bytes_that_do_not_decode_fail_locally(emulator: Emulator) -> None:
    """An image whose structure is whole but whose pixels do not decode is caught locally."""
    data = _png_with_bad_pixels()
    assert image_problem(data) is None  # the cheap check cannot see it
    async with AsyncFashn(
        api_key=emulator.api_key, base_url=emulator.url, prepare_images=True
    ) as client:
        with pytest.raises(errors.ImageInputError, match="model_image: the image does not decode"):
            await client.submit(model_image=data, garment_image=data, category="tops")
    assert emulator.report().accepted == []
    assert emulator.report().bad_requests == 0


async def test_one_image_asked_for_5000_times_at_once_is_prepared_once() -> None:
    """Concurrent and later requests for the same bytes share one preparation."""
    preparer = ImagePreparation().preparer()
    photo = encoded(Image.new("RGB", (2400, 1600), "green"), "JPEG", quality=50)
    results = await asyncio.gather(*(preparer.data_uri("model_image", photo) for _ in range(5000)))
    assert len(set(results)) == 1
    assert preparer.prepared == 1


async def test_a_batch_prepares_its_one_model_photo_once(emulator: Emulator) -> None:
    """A batch pairing one model photo with many garments prepares the photo once."""
    model = encoded(Image.new("RGB", (600, 400), "green"), "JPEG")
    garments = [encoded(Image.new("RGB", (64, 64), (i, 0, 0)), "PNG") for i in range(30)]
    async with AsyncFashn(
        api_key=emulator.api_key, base_url=emulator.url, prepare_images=ImagePreparation()
    ) as client:
        results = [r async for r in client.batch((model, g, "tops") for g in garments)]
        assert all(r.ok for r in results)
        assert client._engine.preparer is not None
        assert client._engine.preparer.prepared == 1 + len(garments)
    assert len(emulator.report().accepted) == len(garments)


async def test_cache_is_bounded_in_bytes() -> None:
    """The cache never holds more than cache_bytes; the least recently used go first."""
    images = [encoded(Image.new("RGB", (40, 40), (i, i, i)), "PNG") for i in range(20)]
    preparer = ImagePreparation(cache_bytes=3000).preparer()
    for data in images:
        await preparer.data_uri("f", data)
    assert 0 < preparer._cached_bytes <= 3000
    await preparer.data_uri("f", images[-1])  # still cached
    assert preparer.prepared == 20
    await preparer.data_uri("f", images[0])  # evicted long ago
    assert preparer.prepared == 21


async def test_request_body_carries_the_prepared_image() -> None:
    """With a preparer, the JSON body sent holds the re-encoded, downscaled image."""
    photo = encoded(Image.new("RGB", (6000, 4000), "white"), "JPEG")
    request = TryOnRequest(model_image=photo, garment_image=photo, category="tops")
    preparer = ImagePreparation().preparer()
    body = (await prepare_request(request, preparer=preparer)).body
    mime, image = decoded(body["model_image"].encode())
    assert (mime, image.size) == ("image/jpeg", (2000, 1333))
    assert body["garment_image"] == body["model_image"]
    assert preparer.prepared == 1


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
@pytest.mark.parametrize("level", [0, 300, 40_000, 65_535])
async def test_sixteen_bit_grayscale_is_scaled_not_clipped(mode: str, level: int) -> None:
    """16-bit grayscale becomes 8-bit by scaling (level / 257), never clipped to white."""
    source = Image.new("I;16", (8, 8), level) if mode != "I" else Image.new("I", (8, 8), level)
    if mode == "I;16B":
        source = source.convert("I").convert("I;16B")
    data = encoded(source, "PNG" if mode == "I;16" else "TIFF")
    mime, image = await prepared(data)
    assert mime == "image/jpeg"
    low, high = image.convert("L").getextrema()
    expected = round(level / 257) if (mode != "I" or level > 255) else level
    assert abs(low - expected) <= 2
    assert abs(high - expected) <= 2


from fashn_async._prepare import MAX_PIXELS  # noqa: E402 - beside the tests that use it


@pytest.mark.parametrize("size", [(10_000, 9_500), (7_100, 7_100)])
async def test_too_many_pixels_is_an_image_input_error_unsent(
    emulator: Emulator, size: tuple[int, int]
) -> None:
    """Over MAX_PIXELS (Pillow's bomb warning included): ImageInputError, nothing sent."""
    assert size[0] * size[1] > MAX_PIXELS
    data = encoded(Image.new("1", size), "PNG")
    async with AsyncFashn(
        api_key=emulator.api_key, base_url=emulator.url, prepare_images=True
    ) as client:
        with pytest.raises(errors.ImageInputError, match="model_image: .* 50 megapixels"):
            await client.submit(model_image=data, garment_image=data, category="tops")
    report = emulator.report()
    assert (report.accepted, report.bad_requests, report.status_calls_total) == ([], 0, 0)


@pytest.mark.parametrize(("mode", "kept"), [("CMYK", False), ("RGB", True)])
def test_a_colour_profile_is_kept_only_where_the_colours_stay(mode: str, kept: bool) -> None:
    """A CMYK photo's profile describes CMYK: on the RGB pixels converted from it, it
    would misread them, so it is dropped; an RGB photo keeps its profile."""
    from fashn_async._images import from_data_uri
    from fashn_async._prepare import prepare_image

    profile = b"\0\0\0\x80" + b"fake-icc-profile" * 8
    buffer = io.BytesIO()
    Image.new(mode, (32, 32)).save(buffer, format="JPEG", icc_profile=profile)
    prepared = prepare_image("model_image", buffer.getvalue(), ImagePreparation())
    data = from_data_uri("model_image", prepared.decode())
    with Image.open(io.BytesIO(data)) as out:
        assert out.mode == "RGB"
        assert (out.info.get("icc_profile") == profile) is kept


def test_a_phone_photo_past_50_megapixels_is_prepared_when_a_jpeg() -> None:
    """A 108 MP JPEG (12000 x 9000, as phones of 2024 take) is decoded already reduced:
    prepared to the 2000 px edge; the same pixels as a PNG are refused (decoded whole)."""
    from fashn_async._prepare import pixels_problem, prepare_image

    big = Image.new("RGB", (12_000, 9_000), (40, 90, 160))
    jpeg = encoded(big, "JPEG")
    assert pixels_problem(jpeg) is None
    assert b"base64," in prepare_image("model_image", jpeg, ImagePreparation())
    problem = pixels_problem(encoded(Image.new("1", (12_000, 9_000)), "PNG"))
    assert problem is not None
    assert "50 megapixels (12000 x 9000 pixels)" in problem


async def test_a_file_that_is_no_image_is_named_by_its_path(tmp_path: Path) -> None:
    """A file whose content is refused names the file as well as the field (``run
    --model text.jpg`` said only ``model_image: the data is not an image``)."""
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(errors.ImageInputError, match=f"model_image: {text}: the data is not"):
        await encode_image("model_image", text)


def _heic(size: tuple[int, int] = (300, 200), **options: Any) -> bytes:
    """A HEIC photo, as an iPhone saves them (written by pillow-heif, without making
    Pillow read HEIC: the client is what registers that)."""
    from pillow_heif import from_pillow

    out = io.BytesIO()
    from_pillow(Image.new("RGB", size, "red")).save(out, format="HEIF", **options)
    return out.getvalue()


async def test_a_heic_phone_photo_is_prepared_as_jpeg() -> None:
    """An iPhone's HEIC photo (pillow-heif, in the images extra, reads it) is sent as
    JPEG, upright (its EXIF orientation applied) and without its metadata."""
    exif = Image.Exif()
    exif[0x0112] = 6
    mime, image = await prepared(_heic((300, 200), exif=exif.tobytes()))
    assert mime == "image/jpeg"
    assert image.size == (200, 300)
    assert image.getexif().get(0x0112) is None


def test_without_pillow_heif_a_heic_photo_says_what_to_do(tmp_path: Path) -> None:
    """Where pillow-heif is not installed, a HEIC photo is refused naming its format and
    what to do (it said ``UnidentifiedImageError: cannot identify image file
    <_io.BytesIO object at 0x...>``), by the preparer and by the bulk job's check."""
    photo = tmp_path / "phone.heic"
    photo.write_bytes(_heic())
    script = (
        "import asyncio, sys\n"
        "sys.modules['pillow_heif'] = None  # not installed\n"
        "from fashn_async import ImagePreparation, errors\n"
        "from fashn_async._prepare import pixels_problem\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "print(pixels_problem(data))\n"
        "try:\n"
        "    asyncio.run(ImagePreparation().preparer().data_uri('model_image', data))\n"
        "except errors.ImageInputError as exc:\n"
        "    print(exc.message)\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", script, str(photo)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith(
        "a HEIC image (an iPhone photo?), which Pillow reads only with pillow-heif"
    )
    assert second.startswith("model_image: a HEIC image")
    assert "BytesIO" not in done.stdout


@pytest.mark.parametrize("raised", [EOFError("Unexpected end of file"), RuntimeError("no AV1")])
async def test_whatever_a_decoder_raises_is_an_image_input_error(
    monkeypatch: pytest.MonkeyPatch, raised: Exception
) -> None:
    """A decoder plugin's own exception (pillow-heif's EOFError for a damaged HEIC, its
    RuntimeError for an AV1 file it was not built for) is an ImageInputError naming the
    field, at opening or at decoding: they escaped as bare builtins from run(), and a
    bulk job's thumbnails ended the command with a traceback, no report."""
    from fashn_async.bulk import _thumbs

    photo = encoded(Image.new("RGB", (64, 64), "red"), "PNG")

    def fail(*args: object, **kwargs: object) -> None:
        raise raised

    for where in ("load", "open"):
        with monkeypatch.context() as patch:
            if where == "load":
                patch.setattr(Image.Image, "load", fail)
            else:
                patch.setattr(Image, "open", fail)
            with pytest.raises(errors.ImageInputError, match="^model_image: "):
                await prepared(photo)
            assert _thumbs._jpeg(io.BytesIO(photo), alone=True) is None
