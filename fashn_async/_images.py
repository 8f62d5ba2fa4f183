"""Images in and out: any accepted input to a request value, outputs to disk.

Inputs become an http(s) URL (sent as is) or ``data:image/<type>;base64,...`` with the
type sniffed from the bytes. Everything that costs time in proportion to an image's size
(reading a file, checking its structure, base64 in either direction) runs in a worker
thread, in chunks small enough that the event loop never waits on it for long; the
result is ASCII bytes ready to be spliced into the JSON body (``_payload``).

Checks, in one place per kind of source (each raises :class:`ImageInputError` naming
the field, the value shortened and what is accepted):

- URL strings: :func:`check_url` (scheme, host by IDNA 2008, port, length).
- Other strings: a data URI, or a local path (the message says to pass ``pathlib.Path``).
- Paths: regular files only (a FIFO, a device such as ``/dev/zero``, a directory or a
  socket is refused without being read), at most :data:`MAX_IMAGE_BYTES`.
- bytes / binary file objects (``read()`` plain or a coroutine, as web frameworks'
  uploads), at most :data:`MAX_IMAGE_BYTES`.
- The bytes themselves: a known signature and a structure that is whole
  (:func:`image_problem`: PNG chunks and CRCs, JPEG markers through end of image, ...).

Outputs are streamed to a temporary file and renamed into place, so a file on disk is
always whole; any failure to write names the path (:class:`SaveError`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import io
import ipaddress
import os
import re
import stat
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import idna

from fashn_async._structure import image_problem
from fashn_async._validators import shorten
from fashn_async.errors import DownloadError, ImageInputError, InvalidRequestError, SaveError

if TYPE_CHECKING:
    import aiohttp

    from fashn_async._prepare import Preparer

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_URL_LENGTH",
    "ImageInput",
    "check_image_bytes",
    "check_image_input",
    "check_url",
    "encode_base64",
    "encode_image",
    "in_worker",
    "offload",
    "image_file_problem",
    "image_problem",
    "read_image_file",
    "save_output",
    "sniff_mime",
]
#: What an image field accepts: an http(s) URL or data URI string, a path, raw bytes,
#: or a binary file object (``read()`` plain, or a coroutine as in web frameworks).
ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]"

_DATA_URI = re.compile(r"^data:(image/[A-Za-z0-9.+-]+);base64,(.*)$", re.DOTALL)

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
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


def sniff_mime(data: bytes) -> str | None:
    """The image MIME type the bytes start with, or None when they are no image we know."""
    for offset, magic, mime in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
    return None


#: Largest image accepted, in bytes (decoded). No byte limit is documented; the largest
#: image the docs describe is 6000 px on the longest edge (4K endpoints, docs.fashn.ai
#: "Image Preprocessing Best Practices"; 2000 px for tryon-v1.6, NOTES.md), which a JPEG
#: holds in well under 50 MiB, and oversized base64 bodies fail upstream with HTTP 500
#: (docs.fashn.ai "Troubleshooting"). 50 MiB also keeps ``/dev/zero``-like sources bounded.
MAX_IMAGE_BYTES: Final = 50 * 1024 * 1024
#: Longest image URL accepted, in characters: 8 KiB is the request-line limit of common
#: HTTP servers and CDNs (nginx, Apache, CloudFront), so a longer URL cannot be fetched.
MAX_URL_LENGTH: Final = 8192
#: Inputs at least this large are checked and encoded in a worker thread. Below it, a hop
#: to a thread costs more than the work itself (about 80 us for 64 KiB).
OFFLOAD_BYTES: Final = 64 * 1024
# Base64 is made and checked in chunks (a multiple of 3 bytes / 4 characters), so the
# worker thread lets go of the GIL between them and the loop is never held for long.
_B64_CHUNK: Final = 3 * 2**16
_DATA_PREFIX: Final = "data:"
_MIME = re.compile(r"image/[A-Za-z0-9.+-]{1,64}")
_PATH_HINT = re.compile(r"^(?:[A-Za-z]:[\\/]|[.~]{0,2}[\\/]|[^:/?#]+[\\/])|\.[A-Za-z0-9]{2,5}$")


def check_url(
    field: str, value: Any, *, error: type[InvalidRequestError] = ImageInputError
) -> None:
    """An http(s) URL the API can fetch: host valid under IDNA 2008, port 1-65535.

    Underscores are allowed in host labels (some CDNs use them); white space, control
    characters and URLs over :data:`MAX_URL_LENGTH` characters are not.

    Raises:
        ImageInputError: (or ``error``) naming the field, the URL and what is accepted.
    """

    def fail(problem: str) -> InvalidRequestError:
        return error(f"{field}: {problem} (got {shorten(value)})")

    if not isinstance(value, str):
        raise fail("expected an http(s) URL string")
    if len(value) > MAX_URL_LENGTH:
        raise fail(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise fail("the URL contains white space or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise fail("the URL's port must be a number from 1 to 65535") from None
    if parts.scheme.lower() not in ("http", "https"):
        if len(parts.scheme) <= 1 and _looks_like_path(value):  # none, or a drive letter
            raise fail(_PATH_MESSAGE)
        raise fail(
            "expected an http(s) URL or a data:image/<type>;base64, URI "
            f"(the scheme {parts.scheme or '(none)'!r} is not accepted)"
        )
    if port == 0:
        raise fail("the URL's port must be a number from 1 to 65535")
    host = parts.hostname
    if not host:
        raise fail("the URL names no host")
    if not _valid_host(host):
        raise fail("the URL's host is not a valid domain name or IP address (IDNA 2008)")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    if len(host.rstrip(".")) > 253:
        return False
    try:
        # Strict IDNA 2008 after lowercasing (no UTS 46 mapping: a soft hyphen or a
        # full-width letter is refused, not silently dropped or folded). Underscores are
        # common in practice though not in IDNA: the rest of the label is checked.
        idna.encode(host.rstrip(".").lower().replace("_", "a"))
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return True


_PATH_MESSAGE = (
    "this looks like a local file path, but a str is read as a URL or data URI: "
    "pass pathlib.Path(...) to send the file (or write the URL with http:// or https://)"
)


def _looks_like_path(value: str) -> bool:
    # Only reached for a value already refused: the stat just words the error better.
    return bool(_PATH_HINT.search(value)) or os.path.exists(value)


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


def _decode_base64(field: str, value: str, start: int = 0) -> bytes:
    """Strict base64 from ``value[start:]`` (no white space), decoded chunk by chunk.

    Raises:
        ImageInputError: invalid base64, or white space in it (the message says so).
    """
    size = len(value) - start
    if any(ch.isspace() for ch in value[start : start + 80]) or (
        size % 4 and any(ch.isspace() for ch in value[start:])
    ):
        raise ImageInputError(
            f"{field}: the data URI's base64 contains white space or line breaks; "
            "remove them (base64.b64encode(data).decode() makes none)"
        )
    if size % 4:
        raise ImageInputError(
            f"{field}: the data URI holds invalid base64 (its length is not a multiple of 4)"
        )
    try:
        step = _B64_CHUNK // 3 * 4
        return b"".join(
            base64.b64decode(value[i : i + step], validate=True)
            for i in range(start, len(value), step)
        )
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError(f"{field}: the data URI holds invalid base64 ({exc})") from None


def encode_base64(data: bytes) -> bytes:
    return b"".join(
        base64.b64encode(data[i : i + _B64_CHUNK]) for i in range(0, len(data), _B64_CHUNK)
    )


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
        size = memoryview(value).nbytes
        if not size:
            raise ImageInputError(f"{field}: the image bytes are empty")
        if size > MAX_IMAGE_BYTES:
            raise ImageInputError(f"{field}: {_too_large(size)}")
        if sniff_mime(bytes(memoryview(value)[:32])) is None:
            raise ImageInputError(f"{field}: {_NOT_AN_IMAGE}")
    elif isinstance(value, os.PathLike):
        path = os.fspath(value)
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


def _too_large(size: int) -> str:
    return (
        f"the image is {size / 2**20:.1f} MiB; at most {MAX_IMAGE_BYTES // 2**20} MiB is "
        "accepted (resize it, or pass a URL)"
    )


def check_image_bytes(field: str, data: bytes) -> str:
    """The MIME type of whole image bytes, or ImageInputError saying what is wrong.

    Raises:
        ImageInputError: not an image, or its structure is cut short or damaged.
    """
    mime = sniff_mime(data[:32])
    if mime is None:
        raise ImageInputError(f"{field}: {_NOT_AN_IMAGE}")
    problem = image_problem(data)
    if problem is not None:
        raise ImageInputError(f"{field}: {problem}")
    return mime


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_image_file(field: str, path: str | os.PathLike[str]) -> bytes:
    """Read a regular file of at most :data:`MAX_IMAGE_BYTES` (blocking: call in a thread).

    A FIFO, device, directory or socket is refused without being read, so nothing here
    can hang or read forever.

    Raises:
        ImageInputError: no such file, not a regular file, unreadable, empty, too large.
    """
    shown = os.fspath(path)
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            kind = next((name for test, name in _KINDS if test(before.st_mode)), "not a file")
            raise ImageInputError(f"{field}: {shown} is {kind}, not a regular image file")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            # The name may have been swapped since the stat: check what was opened.
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ImageInputError(f"{field}: {shown} is not a regular image file")
            data = fh.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        raise ImageInputError(f"{field}: no such file: {shown}") from None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ImageInputError(f"{field}: cannot read {shown}: {why}") from None
    if not data:
        raise ImageInputError(f"{field}: the file is empty: {shown}")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageInputError(f"{field}: {shown}: {_too_large(len(data))}")
    return data


def image_file_problem(path: str | os.PathLike[str]) -> str | None:
    """What makes ``path`` unusable as an input image, or None (blocking: use a thread).

    The same checks a request runs before sending: a regular file, within the size cap,
    a known signature and a whole structure (:func:`image_problem`). For dry runs.
    """
    try:
        check_image_bytes("file", read_image_file("file", path))
    except ImageInputError as exc:
        return exc.message.removeprefix("file: ")
    return None


async def _read_object(field: str, value: Any) -> bytes:
    """``value.read()``: awaited when it is a coroutine, else run in a worker thread."""
    read = value.read
    if inspect.iscoroutinefunction(read):
        result: Any = await _call_read(read)
    else:
        result = await in_worker(_call_read, read)
        if inspect.isawaitable(result):  # a read() that returns an awaitable
            result = await result
    if isinstance(result, str):
        raise ImageInputError(
            f"{field}: the file object was opened in text mode; open it with 'rb'"
        )
    if not isinstance(result, bytes | bytearray | memoryview):
        raise ImageInputError(
            f"{field}: the file object's read() gave {type(result).__name__}, not bytes"
        )
    data = bytes(result)
    if not data:
        raise ImageInputError(f"{field}: the file object gave no data (already read?)")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageInputError(f"{field}: {_too_large(len(data))}")
    return data


def _call_read(read: Any) -> Any:
    try:
        return read(MAX_IMAGE_BYTES + 1)
    except TypeError:  # a read() that takes no size
        return read()


async def offload(size: int, func: Any, *args: Any) -> Any:
    """``func(*args)`` in a worker thread when ``size`` makes it worth the hop."""
    if size >= OFFLOAD_BYTES:
        return await in_worker(func, *args)
    return func(*args)


_WORKERS: Final = min(4, os.cpu_count() or 2)
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


async def in_worker(func: Any, *args: Any) -> Any:
    """``func(*args)`` in one of a few worker threads kept for image work.

    Few, and reused: starting a thread blocks the loop until the thread runs, which can
    take tens of milliseconds while other threads hold the GIL; and more threads than
    cores cannot make CPU-bound work go faster.
    """
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(_WORKERS)
    return await anyio.to_thread.run_sync(func, *args, limiter=limiter)


def _data_uri(field: str, data: bytes) -> bytes:
    mime = check_image_bytes(field, data)
    return b"data:" + mime.encode() + b";base64," + encode_base64(data)


def _relabel(field: str, value: str, start: int) -> bytes:
    """A data URI's payload checked once; the type label re-read from its bytes."""
    mime = check_image_bytes(field, _decode_base64(field, value, start))
    step = _B64_CHUNK // 3 * 4
    parts = (value[i : i + step].encode("ascii") for i in range(start, len(value), step))
    return b"".join([b"data:", mime.encode(), b";base64,", *parts])


async def encode_image(field: str, value: ImageInput, *, preparer: Preparer | None = None) -> bytes:
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
            result: bytes = await offload(len(value), _relabel, field, value, start)
            return result
        data: bytes = await offload(len(value), _decode_base64, field, value, start)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, os.PathLike):
        data = await in_worker(read_image_file, field, value)
    else:
        data = await _read_object(field, value)
    if preparer is not None:
        return await preparer.data_uri(field, data)
    encoded: bytes = await offload(len(data), _data_uri, field, data)
    return encoded


def output_filename(stem: str, index: int, source: str, content_type: str | None = None) -> str:
    """A stable file name for output ``index``, with the extension its type implies."""
    mime = content_type
    if source.startswith("data:"):
        match = _DATA_URI.match(source)
        mime = match.group(1) if match else mime
    ext = _EXTENSIONS.get((mime or "").split(";")[0].strip())
    if ext is None:
        suffix = Path(urlsplit(source).path).suffix.lstrip(".").lower()
        ext = suffix if suffix in ("png", "jpg", "jpeg", "webp", "gif") else "png"
    return f"{stem}_{index}.{ext}"


def _write_chunks(path: Path, chunks: Iterable[bytes]) -> None:
    with path.open("ab") as fh:
        for chunk in chunks:
            fh.write(chunk)


async def save_output(
    session: aiohttp.ClientSession, source: str, directory: Path, stem: str, index: int
) -> Path:
    """Stream one output (URL or data URI) into ``directory``; return the file's path.

    Raises:
        SaveError: the folder or file cannot be written (it names the path and why).
        DownloadError: the output could not be fetched.
    """
    import aiohttp

    await _on_disk("create the folder", directory, _make_folder, directory)
    if source.startswith(_DATA_PREFIX):
        try:
            start = _payload_start(f"output {index}", source)
            data = await offload(len(source), _decode_base64, f"output {index}", source, start)
        except ImageInputError as exc:
            raise DownloadError(f"output {index} is a malformed data URI") from exc
        target = directory / output_filename(stem, index, source)
        await _on_disk("write", target, _atomic_write, target, [data])
        return target
    partial: Path | None = None
    try:
        async with session.get(source, raise_for_status=False) as response:
            if response.status != 200:
                raise DownloadError(
                    f"downloading output {index} failed: HTTP {response.status}",
                    status_code=response.status,
                )
            target = directory / output_filename(stem, index, source, response.content_type)
            partial = target.with_name(f".{target.name}.part")
            await _on_disk("write", target, _start_partial, target, partial)
            buffer = io.BytesIO()
            async for chunk in response.content.iter_chunked(256 * 1024):
                buffer.write(chunk)
                if buffer.tell() >= 1024 * 1024:
                    await _on_disk("write", partial, _write_chunks, partial, [buffer.getvalue()])
                    buffer = io.BytesIO()
            await _on_disk("write", partial, _write_chunks, partial, [buffer.getvalue()])
        await _on_disk("write", target, os.replace, partial, target)
        partial = None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise DownloadError(f"downloading output {index} failed: {type(exc).__name__}") from exc
    finally:
        if partial is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_unlink, partial)
    return target


async def _on_disk(what: str, path: Path, func: Any, *args: Any) -> Any:
    """``func(*args)`` in a worker thread; an OSError becomes a SaveError naming ``path``."""
    try:
        return await anyio.to_thread.run_sync(func, *args)
    except OSError as exc:
        raise SaveError(f"cannot {what} {path}: {_why(exc)}", path=str(path)) from exc


def _why(exc: OSError) -> str:
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return "a file is in the way where a folder is needed"
    if isinstance(exc, IsADirectoryError):
        return "a folder of that name is in the way"
    return exc.strerror or type(exc).__name__


def _make_folder(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if not directory.is_dir():  # e.g. a dangling symlink
        raise NotADirectoryError(20, "not a folder", str(directory))


def _start_partial(target: Path, partial: Path) -> None:
    if target.is_dir():
        raise IsADirectoryError(21, "is a folder", str(target))
    partial.write_bytes(b"")


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _atomic_write(target: Path, chunks: Iterable[bytes]) -> None:
    partial = target.with_name(f".{target.name}.part")
    try:
        _start_partial(target, partial)
        _write_chunks(partial, chunks)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
