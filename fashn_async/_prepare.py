"""Optional image preparation, as integrators do it before sending base64 (needs Pillow).

NOTES.md and docs.fashn.ai ("Image Preprocessing Best Practices"): longest edge at most
2000 px for tryon-v1.6 (6000 px for 4K endpoints), re-encoded as JPEG at quality 95.
:class:`ImagePreparation` configures it; ``AsyncFashn(prepare_images=...)`` turns it on.
Without it, image bytes are sent as given (after the structural check of ``_images``).

Each image is decoded in full (so a truncated or damaged file fails here, locally), its
EXIF orientation applied, downscaled when its longest edge is above ``max_edge``, and
re-encoded: JPEG at ``jpeg_quality``, or PNG where it has transparency. Re-encoding also
drops the photo's metadata (a phone photo's EXIF holds its GPS position). All of it runs
in a worker thread (Pillow releases the GIL while decoding and encoding).

Results are cached by a hash of the input bytes, bounded in bytes, so a batch that
pairs one model photo with 5,000 garments prepares that photo once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import io
import threading
import warnings
from collections import OrderedDict
from typing import Any, Final

import attrs

from fashn_async._images import check_image_bytes, sniff_mime, to_data_uri
from fashn_async._redact import safe_repr
from fashn_async._sources import in_worker, offload
from fashn_async._validators import at_least_one, config_int
from fashn_async.errors import ConfigurationError, ImageInputError

__all__ = [
    "MAX_JPEG_PIXELS",
    "MAX_PIXELS",
    "ImagePreparation",
    "Preparer",
    "pixels_problem",
    "prepare_image",
]

#: NOTES.md: "Longest edge at most 2000 px is recommended" (tryon-v1.6).
DEFAULT_MAX_EDGE: Final = 2000
#: Most pixels an image to prepare may have (width x height): 50 megapixels. The largest
#: image the API docs describe is 6000 px on the longest edge (docs.fashn.ai "Image
#: Preprocessing Best Practices", 4K endpoints: 36 MP when square), and a 48 MP phone
#: photo (8064x6048) fits; decoding one costs up to 3 bytes a pixel (150 MB) in a worker.
#: Larger ones are refused before they are decoded (Pillow only warns up to 89 MP).
MAX_PIXELS: Final = 50_000_000
#: A JPEG is decoded already reduced (``draft``: 1/2 to 1/8 of each edge) to about the
#: longest edge asked, so a 108 or 200 MP phone photo costs what a 12 MP one does; up to
#: Pillow's own hard limit (twice ``Image.MAX_IMAGE_PIXELS``, about 179 MP).
MAX_JPEG_PIXELS: Final = 178_956_970
#: NOTES.md: integrators "re-encode (JPEG q95)".
DEFAULT_JPEG_QUALITY: Final = 95


def _check_quality(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    config_int("jpeg_quality", value, low=1)
    if value > 100:
        raise ConfigurationError(f"jpeg_quality must be from 1 to 100, got {value!r}")


def _check_cache(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    config_int("cache_bytes", value, low=0)


@attrs.frozen(kw_only=True)
class ImagePreparation:
    """How image bytes are prepared before they are sent (the ``images`` extra: Pillow).

    Applies to paths, bytes, file objects and data URIs; URLs are sent as given (the API
    fetches them).

    Args:
        max_edge: Longest edge in pixels; larger images are downscaled (LANCZOS), keeping
            their aspect ratio. Default 2000 (NOTES.md, for tryon-v1.6; use 6000 for 4K
            endpoints, per docs.fashn.ai).
        jpeg_quality: JPEG quality of the re-encoded image, 1 to 100 (default 95, NOTES.md).
        cache_bytes: Bytes of prepared images kept, by a hash of their input (default
            256 MiB; 0 turns the cache off). Least recently used go first.

    Raises:
        ConfigurationError: a bad value, or Pillow is not installed
            (``pip install 'fashn-async[images]'``).
    """

    max_edge: int = attrs.field(default=DEFAULT_MAX_EDGE, validator=at_least_one)
    jpeg_quality: int = attrs.field(default=DEFAULT_JPEG_QUALITY, validator=_check_quality)
    cache_bytes: int = attrs.field(default=256 * 2**20, validator=_check_cache)

    def __attrs_post_init__(self) -> None:
        if importlib.util.find_spec("PIL") is None:
            raise ConfigurationError(
                "image preparation needs Pillow: pip install 'fashn-async[images]'"
            )

    @classmethod
    def from_option(cls, value: Any) -> ImagePreparation | None:
        """``AsyncFashn(prepare_images=...)``: an ImagePreparation, True, False or None.

        Raises:
            ConfigurationError: any other value, or Pillow is missing.
        """
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, ImagePreparation):
            return value
        raise ConfigurationError(
            "prepare_images must be an ImagePreparation, True, False or None, "
            f"got {type(value).__name__}"
        )

    def preparer(self) -> Preparer:
        """A preparer with its own cache (one per client)."""
        return Preparer(self)


class Preparer:
    """Prepares image bytes in a worker thread, each distinct input once (while cached)."""

    def __init__(self, config: ImagePreparation) -> None:
        self.config = config
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._locks: dict[bytes, tuple[asyncio.Lock, int]] = {}
        #: Images prepared (cache misses), for tests and benchmarks.
        self.prepared = 0

    @safe_repr
    def __repr__(self) -> str:
        return (
            f"<Preparer max_edge={self.config.max_edge} cached={len(self._cache)} "
            f"({self._cached_bytes} bytes) prepared={self.prepared}>"
        )

    async def data_uri(self, field: str, data: bytes | bytearray) -> bytes:
        """The prepared image as a ``data:image/...;base64,`` URI, in ASCII bytes.

        Raises:
            ImageInputError: the image does not decode (truncated, damaged, not an image).
        """
        key: bytes = await offload(len(data), _digest, data)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:  # the same image asked for twice at once: prepared once
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit
                result: bytes = await in_worker(prepare_image, field, data, self.config)
                self.prepared += 1
                self._store(key, result)
                return result
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def _store(self, key: bytes, value: bytes) -> None:
        if len(value) > self.config.cache_bytes:
            return
        self._cache[key] = value
        self._cached_bytes += len(value)
        while self._cached_bytes > self.config.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= len(old)


def _digest(data: bytes | bytearray) -> bytes:
    return hashlib.sha256(data).digest()


def prepare_image(field: str, data: bytes | bytearray, config: ImagePreparation) -> bytes:
    """Decode, orient, downscale and re-encode one image; a data URI in ASCII bytes.

    Blocking (call it in a worker thread).

    Raises:
        ImageInputError: the image does not decode in full.
    """
    from PIL import ImageOps

    Image = _pillow()

    check_image_bytes(field, data)
    edge = config.max_edge
    try:
        with _open(field, data) as opened:
            if opened.format == "JPEG":
                opened.draft("RGB", (edge, edge))  # decode at 1/2, 1/4.. scale when larger
            opened.load()
            image = ImageOps.exif_transpose(_eight_bit(opened))
            if max(image.size) > edge:
                image.thumbnail((edge, edge), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            if _has_transparency(image):
                image, fmt, options = image.convert("RGBA"), "PNG", {}
            else:
                fmt, options = "JPEG", {"quality": config.jpeg_quality}
                if image.mode not in ("RGB", "L"):
                    image = image.convert("RGB")
            # A profile describes the colours as stored: kept only where they still are
            # (a CMYK profile on the RGB pixels converted from it would misread them).
            icc = opened.info.get("icc_profile") if image.mode == opened.mode else None
            image.save(out, format=fmt, icc_profile=icc, **options)
            mime = f"image/{fmt.lower()}"
    except ImageInputError:
        raise
    except Exception as exc:  # any decoder's (a damaged HEIC's EOFError, RuntimeError...)
        why = str(exc) or type(exc).__name__
        raise ImageInputError(f"{field}: the image does not decode ({why})") from None
    return to_data_uri(mime, out.getvalue())


#: Serializes the warning filter change around ``Image.open`` between worker threads.
_OPEN_LOCK = threading.Lock()


def _open(field: str, data: bytes | bytearray) -> Any:
    """``Image.open`` (the header only), refusing more than :data:`MAX_PIXELS` pixels.

    Pillow warns (``DecompressionBombWarning``) about a large image as it opens it; that
    warning is our ImageInputError here, as is any image over the cap.
    """
    Image = _pillow()

    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # (the cap is ours)
        try:
            opened = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            opened = None
        except Exception:  # (UnidentifiedImageError, or a plugin's own: EOFError...)
            raise ImageInputError(f"{field}: {undecodable(data)}") from None
    cap = MAX_JPEG_PIXELS if opened is not None and opened.format == "JPEG" else MAX_PIXELS
    if opened is None or opened.width * opened.height > cap:
        size = f" ({opened.width} x {opened.height} pixels)" if opened is not None else ""
        if opened is not None:
            opened.close()
        raise ImageInputError(
            f"{field}: the image has more than {cap // 1_000_000} megapixels{size}, "
            "too many to prepare: resize it first"
        )
    return opened


@functools.cache
def _pillow() -> Any:
    """Pillow's ``Image``, with HEIF/HEIC (iPhone photos) readable where pillow-heif is
    installed (the ``images`` extra): its opener registered once, on first use."""
    from PIL import Image

    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        pass
    else:
        register_heif_opener()
    return Image


def undecodable(data: bytes | bytearray) -> str:
    """Why Pillow here cannot decode image ``data``, and what to do for a format it reads
    only with a plugin (HEIC without pillow-heif)."""
    mime = sniff_mime(bytes(data[:64]))
    if mime == "image/heic":
        return (
            "a HEIC image (an iPhone photo?), which Pillow reads only with pillow-heif: "
            "pip install pillow-heif (or 'fashn-async[images]'), or save it as JPEG"
        )
    return f"the image does not decode here ({mime or 'an unknown format'})"


def pixels_problem(data: bytes | bytearray) -> str | None:
    """Why image ``data`` has too many pixels to prepare (its header read only), or None."""
    try:
        _open("the image", data).close()
    except ImageInputError as exc:
        return exc.message.removeprefix("the image: ")
    return None


def _eight_bit(image: Any) -> Any:
    """16-bit grayscale scaled to 8 bits (Pillow's own conversion clips it to white)."""
    if image.mode.startswith("I;16") or (image.mode == "I" and image.getextrema()[1] > 255):
        return image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if image.mode in ("I", "F"):
        return image.convert("L")
    return image


def _has_transparency(image: Any) -> bool:
    """True when some pixel is not fully opaque (an alpha channel or a transparent color)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = image.convert("RGBA").getchannel("A")
        low, _ = alpha.getextrema()
        return bool(low < 255)
    return False
