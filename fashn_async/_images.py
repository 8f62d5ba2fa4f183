"""Images in and out: any accepted input to a request value, outputs to disk.

Inputs become an http(s) URL (sent as is) or ``data:image/<type>;base64,...`` with the
type sniffed from the bytes. Files are read in the loop's executor, never on the loop.
Outputs are streamed to a temporary file and renamed into place, so a file on disk is
always whole.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

from fashn_async.errors import DownloadError, ImageInputError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["ImageInput", "check_image_input", "encode_image", "save_output", "sniff_mime"]

#: What an image field accepts: an http(s) URL or data URI string, a path, raw bytes,
#: or a binary file object.
ImageInput: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]

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


def _check_url(field: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageInputError(
            f"{field}: expected an http(s) URL or a data:image/...;base64, URI, got {value!r:.80}"
        )
    if any(ch.isspace() for ch in value):
        raise ImageInputError(f"{field}: the URL contains white space: {value!r:.80}")


def _decode_data_uri(field: str, value: str) -> bytes:
    match = _DATA_URI.match(value)
    if match is None:
        raise ImageInputError(f"{field}: a data URI must look like data:image/<type>;base64,...")
    try:
        return base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError(f"{field}: the data URI holds invalid base64") from exc


def check_image_input(field: str, value: Any) -> None:
    """Check what can be known about an image value without I/O; raise ImageInputError."""
    if isinstance(value, str):
        if value.startswith("data:"):
            _decode_data_uri(field, value)
        else:
            _check_url(field, value)
    elif isinstance(value, bytes | bytearray | memoryview):
        if not value:
            raise ImageInputError(f"{field}: the image bytes are empty")
    elif isinstance(value, os.PathLike):
        if not os.fspath(value):
            raise ImageInputError(f"{field}: the path is empty")
    elif not callable(getattr(value, "read", None)):
        raise ImageInputError(
            f"{field}: expected a URL, data URI, path, bytes or binary file, "
            f"got {type(value).__name__}"
        )


def _read_source(field: str, value: Any) -> bytes:
    """Read a path or file object (runs in the executor)."""
    if isinstance(value, os.PathLike):
        path = Path(value)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ImageInputError(f"{field}: no such file: {path}") from exc
        except OSError as exc:
            raise ImageInputError(f"{field}: cannot read {path}: {exc.strerror}") from exc
    data = value.read()
    if not isinstance(data, bytes | bytearray):
        raise ImageInputError(f"{field}: the file object must be opened in binary mode")
    return bytes(data)


#: Payloads at least this large are base64-encoded in the executor. Below it, a hop to a
#: thread costs more than the encoding itself (about 80 us for 64 KiB).
OFFLOAD_BYTES = 64 * 1024


async def encode_image(field: str, value: ImageInput) -> str:
    """Turn one image input into the string the API takes, failing locally if unusable."""
    check_image_input(field, value)
    if isinstance(value, str):
        if not value.startswith("data:"):
            return value
        # Already base64 (check_image_input decoded all of it): only the type label is
        # re-read from the bytes, the payload text is sent as given.
        payload = value.partition(",")[2]
        return f"data:{_sniffed(field, base64.b64decode(payload[:64]))};base64,{payload}"
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, _read_source, field, value)
    mime = _sniffed(field, data)
    if len(data) >= OFFLOAD_BYTES:
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(None, base64.b64encode, data)
    else:
        encoded = base64.b64encode(data)
    return f"data:{mime};base64,{encoded.decode('ascii')}"


def _sniffed(field: str, data: bytes) -> str:
    mime = sniff_mime(data[:32])
    if mime is None:
        raise ImageInputError(f"{field}: the data is not an image (no known image signature)")
    return mime


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
    """Stream one output (URL or data URI) into ``directory``; return the file's path."""
    import aiohttp

    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: directory.mkdir(parents=True, exist_ok=True))
    if source.startswith("data:"):
        try:
            data = _decode_data_uri(f"output {index}", source)
        except ImageInputError as exc:
            raise DownloadError(f"output {index} is a malformed data URI") from exc
        target = directory / output_filename(stem, index, source)
        await loop.run_in_executor(None, _atomic_write, target, [data])
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
            await loop.run_in_executor(None, partial.write_bytes, b"")
            buffer = io.BytesIO()
            async for chunk in response.content.iter_chunked(256 * 1024):
                buffer.write(chunk)
                if buffer.tell() >= 1024 * 1024:
                    await loop.run_in_executor(None, _write_chunks, partial, [buffer.getvalue()])
                    buffer = io.BytesIO()
            await loop.run_in_executor(None, _write_chunks, partial, [buffer.getvalue()])
        await loop.run_in_executor(None, os.replace, partial, target)
        partial = None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise DownloadError(f"downloading output {index} failed: {type(exc).__name__}") from exc
    finally:
        if partial is not None:
            await loop.run_in_executor(None, _unlink, partial)
    return target


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _atomic_write(target: Path, chunks: Iterable[bytes]) -> None:
    partial = target.with_name(f".{target.name}.part")
    try:
        partial.write_bytes(b"")
        _write_chunks(partial, chunks)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
