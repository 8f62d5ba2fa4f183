"""Images in: any accepted input to a request value, and data URIs both ways.

Inputs become an http(s) URL (sent as is) or ``data:image/<type>;base64,...`` with the
type sniffed from the bytes. Everything that costs time in proportion to an image's size
(reading a file, checking its structure, base64 in either direction) runs in a worker
thread, in chunks small enough that the event loop never waits on it for long; the
result is ASCII bytes ready to be spliced into the JSON body (``_payload``).

Checks, in one place per kind of source (each raises :class:`ImageInputError` naming
the field, the value shortened and what is accepted):

- URL strings: :func:`check_url` (``_urls``: scheme, host by IDNA 2008, port, length).
- Other strings: a data URI, or a local path (the message says to pass ``pathlib.Path``).
- Paths (read in ``_sources``): regular files only (a FIFO, a device such as
  ``/dev/zero``, a directory or a socket is refused unread), at most
  :data:`MAX_IMAGE_BYTES`.
- bytes / binary file objects (``read()`` plain or a coroutine, as web frameworks'
  uploads), at most :data:`MAX_IMAGE_BYTES`.
- The bytes themselves: a known signature and a structure that is whole
  (:func:`image_problem`: PNG chunks and CRCs, JPEG markers through end of image, ...).

Outputs (to disk) are :mod:`fashn_async._outputs`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import IO, Any, Final, Protocol, TypeAlias

from fashn_async._sources import (
    MAX_IMAGE_BYTES,
    OFFLOAD_BYTES,
    byte_view,
    in_io_thread,
    join,
    let_go,
    offload,
    read_image_file,
    read_object,
    too_large,
)
from fashn_async._structure import image_problem
from fashn_async._urls import check_url
from fashn_async._validators import shorten, visible
from fashn_async.errors import ImageInputError

__all__ = [
    "ImageInput",
    "check_image_bytes",
    "check_image_input",
    "checked_image_file",
    "encode_base64",
    "encode_image",
    "from_data_uri",
    "data_uri_type",
    "is_data_uri",
    "is_given_url",
    "image_file_problem",
    "sniff_mime",
    "to_data_uri",
]


class Preparer(Protocol):
    """What prepares image bytes before they are sent (``_prepare.Preparer`` is one)."""

    async def data_uri(self, field: str, data: bytes | bytearray) -> bytes:
        """The prepared image as a data URI, in ASCII bytes."""
        ...


#: What an image field accepts: an http(s) URL or data URI string, a path, raw bytes,
#: or a binary file object (``read()`` plain, or a coroutine as in web frameworks).
ImageInput: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


# (offset, magic, mime); WEBP, AVIF and HEIC need a second look below.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
)


#: HEIF's brands (ISO/IEC 23008-12): any codec (``mif1``, ``msf1``), HEVC's (HEIC).
_HEIF_ANY: Final = (b"mif1", b"msf1")
_HEIC: Final = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs")


def sniff_mime(data: bytes) -> str | None:
    """The image MIME type the bytes start with, or None when they are no image we know."""
    for offset, magic, mime in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":  # ISO BMFF: the major brand, then the compatible ones
        brand, compatible = data[8:12], data[16 : int.from_bytes(data[:4], "big")]
        if brand in (b"avif", b"avis") or (brand in _HEIF_ANY and b"avif" in compatible):
            return "image/avif"
        if brand in _HEIF_ANY or brand in _HEIC:
            return "image/heic"
    return None


# Base64 is made and checked in chunks (a multiple of 3 bytes / 4 characters), so the
# worker thread lets go of the GIL between them and the loop is never held for long.
_B64_CHUNK: Final = 3 * 2**16
_DATA_PREFIX: Final = "data:"
_DATA_URI_HEADER: Final = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,")
_MIME = re.compile(r"image/[A-Za-z0-9.+-]{1,64}")


def _payload_start(field: str, value: str) -> int:
    """Where a data URI's base64 starts, checking its header and size only.

    Nothing here copies or scans the payload: it runs on the loop, for any size.
    """
    comma = value.find(",", 0, len(_DATA_PREFIX) + 80)
    mime, _, encoding = value[len(_DATA_PREFIX) : max(comma, 0)].partition(";")
    if comma < 0 or encoding != "base64" or not _MIME.fullmatch(mime):
        raise ImageInputError(
            f"{field}: a data URI must look like data:image/<type>;base64,<data> "
            f"(got {shorten(value)})"
        )
    size = len(value) - comma - 1
    if not size:
        raise ImageInputError(f"{field}: the data URI holds no image data")
    if size > (MAX_IMAGE_BYTES + 2) // 3 * 4:
        raise ImageInputError(
            f"{field}: the data URI holds more than {MAX_IMAGE_BYTES // 2**20} MiB of image"
        )
    return comma + 1


#: White space (as ``str.isspace`` reads it), found at C speed in a long data URI.
_SPACE: Final = re.compile(r"\s")


def _decode_base64(field: str, value: str, start: int = 0) -> bytes | bytearray:
    """Strict base64 from ``value[start:]`` (no white space), decoded chunk by chunk.

    Raises:
        ImageInputError: invalid base64, or white space in it (the message says so).
    """
    size = len(value) - start
    if _SPACE.search(value, start, start + 80) or (size % 4 and _SPACE.search(value, start)):
        raise ImageInputError(
            f"{field}: the data URI's base64 contains white space or line breaks; "
            "remove them (base64.b64encode(data).decode() makes none)"
        )
    if size % 4:
        raise ImageInputError(
            f"{field}: the data URI holds invalid base64 (its length is not a multiple of 4)"
        )
    step = _B64_CHUNK // 3 * 4
    parts = []
    try:
        for i in range(start, len(value), step):
            parts.append(base64.b64decode(value[i : i + step], validate=True))
            let_go()
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError(f"{field}: the data URI holds invalid base64 ({exc})") from None
    return join(parts)


def from_data_uri(field: str, value: str) -> bytes | bytearray:
    """The bytes a ``data:image/<type>;base64,`` URI holds: the one data-URI decoder.

    Raises:
        ImageInputError: a header other than ``data:image/<type>;base64,``, no data,
            more than ``MAX_IMAGE_BYTES``, or invalid base64 (white space included).
    """
    return _decode_base64(field, value, _payload_start(field, value))


def is_data_uri(value: str | bytes | bytearray) -> bool:
    """Whether ``value`` is a data URI as the API reads one (``data:``, lower case)."""
    if isinstance(value, str):
        return value.startswith(_DATA_PREFIX)
    return value.startswith(b"data:")


def data_uri_type(value: str) -> str | None:
    """The MIME type a ``data:image/<type>;base64,`` URI declares (its header only:
    the rest may be megabytes), or None if it has no such header."""
    match = _DATA_URI_HEADER.match(value, 0, 256)
    return match.group(1) if match else None


#: ``scheme://``, RFC 3986's scheme: a URL of any scheme (``ftp://``, ``HTTPS://``) is
#: a URL to check, and refuse by its scheme, never a path to look for ("no such file");
#: so is ``http:`` or ``https:`` without its ``//`` (``https:/host/a.png``, a typo).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|https?:", re.IGNORECASE)


def is_given_url(value: str) -> bool:
    """Whether a text cell or argument names a URL or data URI, not a local path."""
    return _SCHEME.match(value) is not None or is_data_uri(value)


def to_data_uri(mime: str, data: bytes | bytearray) -> bytes:
    """``data`` as a ``data:<mime>;base64,`` URI, in ASCII bytes: the one data-URI maker."""
    return encode_base64(data, f"{_DATA_PREFIX}{mime};base64,".encode("ascii"))


def encode_base64(data: bytes | bytearray, prefix: bytes = b"") -> bytes:
    """``prefix`` and ``data`` in base64, made chunk by chunk (:func:`let_go` between);
    immutable bytes, as a data URI that is cached and shared must be."""
    return b"".join(_base64_parts(data, prefix))


def _base64_parts(data: bytes | bytearray, prefix: bytes) -> list[bytes]:
    view = memoryview(data)
    parts = [prefix]
    for i in range(0, len(view), _B64_CHUNK):
        parts.append(base64.b64encode(view[i : i + _B64_CHUNK]))
        let_go()
    return parts


def check_image_input(field: str, value: Any) -> None:
    """Check what can be known about an image value cheaply, without I/O.

    Small data URIs are decoded here in full; larger ones (and bytes) are checked once,
    in a worker thread, when the request is prepared.

    Raises:
        ImageInputError: naming the field, the value (shortened) and what is accepted.
    """
    if isinstance(value, str):
        if value.startswith(_DATA_PREFIX):
            start = _payload_start(field, value)
            if len(value) - start < OFFLOAD_BYTES:
                check_image_bytes(field, _decode_base64(field, value, start))
        else:
            check_url(field, value)
    elif isinstance(value, bytes | bytearray | memoryview):
        view = byte_view(field, value)
        if not view.nbytes:
            raise ImageInputError(f"{field}: the image bytes are empty")
        if view.nbytes > MAX_IMAGE_BYTES:
            raise ImageInputError(f"{field}: {too_large(view.nbytes)}")
        if sniff_mime(bytes(view[:32])) is None:
            raise ImageInputError(f"{field}: {_NOT_AN_IMAGE}")
    elif isinstance(value, os.PathLike):
        try:
            path = os.fspath(value)
        except Exception as exc:  # a PathLike whose __fspath__ fails
            raise ImageInputError(
                f"{field}: the path could not be read ({type(exc).__name__}: {exc})"
            ) from None
        if not path or "\0" in str(path):
            raise ImageInputError(f"{field}: expected a file path, got {shorten(value)}")
    elif not callable(getattr(value, "read", None)):
        raise ImageInputError(
            f"{field}: expected a URL or data URI string, a pathlib.Path, bytes or a binary "
            f"file object, got {type(value).__name__} {shorten(value)}"
        )


_NOT_AN_IMAGE = (
    "the data is not an image (no PNG, JPEG, WEBP, GIF, BMP, TIFF, AVIF or HEIC signature)"
)


def check_image_bytes(field: str, data: bytes | bytearray) -> str:
    """The MIME type of whole image bytes, or ImageInputError saying what is wrong.

    Raises:
        ImageInputError: not an image, or its structure is cut short or damaged.
    """
    mime = sniff_mime(bytes(data[:32]))
    if mime is None:
        raise ImageInputError(f"{field}: {_NOT_AN_IMAGE}")
    problem = image_problem(data)
    if problem is not None:
        raise ImageInputError(f"{field}: {problem}")
    return mime


def checked_image_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the image file at ``path``, checked as a request checks them before
    sending: a regular file, within the size cap, a known signature and a whole
    structure (:func:`image_problem`). Blocking: use a thread.

    Raises:
        ImageInputError: naming the field ``file`` and what is wrong.
    """
    data = read_image_file("file", path)
    check_image_bytes("file", data)
    return data


def image_file_problem(path: str | os.PathLike[str]) -> str | None:
    """What makes ``path`` unusable as an input image (:func:`checked_image_file`), or
    None. For dry runs."""
    try:
        checked_image_file(path)
    except ImageInputError as exc:
        return exc.message.removeprefix("file: ")
    return None


def _data_uri(field: str, data: bytes | bytearray) -> bytes | bytearray:
    """A request's own data URI (spliced into its body, never shared): joined a slice at
    a time, so the worker never holds the GIL for a whole copy."""
    mime = check_image_bytes(field, data)
    return join(_base64_parts(data, to_data_uri(mime, b"")))


def _relabel(field: str, value: str, start: int) -> bytes | bytearray:
    """A data URI's payload checked once; the type label re-read from its bytes."""
    mime = check_image_bytes(field, _decode_base64(field, value, start))
    step = _B64_CHUNK // 3 * 4
    parts = [to_data_uri(mime, b"")]
    for i in range(start, len(value), step):
        parts.append(value[i : i + step].encode("ascii"))
        let_go()
    return join(parts)


async def encode_image(
    field: str, value: ImageInput, *, preparer: Preparer | None = None
) -> bytes | bytearray:
    """One image input as the ASCII bytes the API takes: a URL or a data URI.

    Checked in full (each data URI's base64 once), before anything is sent. With a
    ``preparer``, image bytes are resized and re-encoded first (``_prepare``).

    Raises:
        ImageInputError: the value is unusable; the message says why and what to pass.
    """
    check_image_input(field, value)
    if isinstance(value, str):
        if not value.startswith(_DATA_PREFIX):
            return value.encode("utf-8")
        start = _payload_start(field, value)
        if preparer is None:
            result: bytes | bytearray = await offload(len(value), _relabel, field, value, start)
            return result
        data: bytes | bytearray = await offload(len(value), _decode_base64, field, value, start)
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, bytearray | memoryview):
        # A copy (the caller may reuse its buffer), made a slice at a time off the loop.
        view = byte_view(field, value)
        data = await offload(view.nbytes, join, [view])
    elif isinstance(value, os.PathLike):
        # Always in a thread: even its size (os.stat) can block, and a file may be larger
        # than its size said (one still being written, /proc).
        data = await in_io_thread(read_image_file, field, value)
        field = f"{field}: {visible(os.fspath(value))}"  # which file, in what is said of it
    else:
        data = await read_object(field, value)
    if preparer is not None:
        return await preparer.data_uri(field, data)
    encoded: bytes | bytearray = await offload(len(data), _data_uri, field, data)
    return encoded
