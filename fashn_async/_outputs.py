"""Outputs to disk: one output (a URL or a data URI) streamed into a folder, whole.

Outputs are streamed to a temporary file, flushed to the disk and renamed into place
(:mod:`fashn_async._atomic`), so a file on disk is always whole; any failure to write
names the path (:class:`SaveError`). Every disk step runs in a worker thread, and a
cancelled download waits for it to end (:func:`~fashn_async._shield.to_the_end`) before
it removes its temporary file: once the cancel is through, nothing of it writes.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from fashn_async._atomic import append, commit, partial_path, write_atomically
from fashn_async._images import data_uri_type, from_data_uri, is_data_uri
from fashn_async._shield import to_the_end
from fashn_async._sources import in_io_thread, offload
from fashn_async.errors import DownloadError, ImageInputError, SaveError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["output_filename", "save_output"]

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


def output_filename(stem: str, index: int, source: str, content_type: str | None = None) -> str:
    """A stable file name for output ``index``, with the extension its type implies."""
    inline = is_data_uri(source)
    mime = (data_uri_type(source) if inline else None) or content_type
    ext = _EXTENSIONS.get((mime or "").split(";")[0].strip())
    if ext is None:
        suffix = "" if inline else Path(urlsplit(source).path).suffix
        suffix = suffix.lstrip(".").lower()
        ext = suffix if suffix in ("png", "jpg", "jpeg", "webp", "gif") else "png"
    return f"{stem}_{index}.{ext}"


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
    if is_data_uri(source):
        try:
            data = await offload(len(source), from_data_uri, f"output {index}", source)
        except ImageInputError as exc:
            raise DownloadError(f"output {index} is a malformed data URI") from exc
        target = directory / output_filename(stem, index, source)
        await _on_disk("write", target, _atomic_write, target, [data])
        return target
    partial: Path | None = None
    failure: str | None = None
    try:
        async with await _get(session, source) as response:
            if response.status != 200:
                raise DownloadError(
                    f"downloading output {index} failed: HTTP {response.status}",
                    status_code=response.status,
                )
            target = directory / output_filename(stem, index, source, response.content_type)
            partial = partial_path(target)
            await _on_disk("write", target, _start_partial, target, partial)
            buffer = io.BytesIO()
            async for chunk in response.content.iter_chunked(256 * 1024):
                buffer.write(chunk)
                if buffer.tell() >= 1024 * 1024:
                    await _on_disk("write", partial, append, partial, [buffer.getvalue()])
                    buffer = io.BytesIO()
            await _on_disk("write", partial, append, partial, [buffer.getvalue()])
        await _on_disk("write", target, commit, partial, target)
        partial = None
    except (TimeoutError, aiohttp.ClientError) as exc:
        # Not chained: aiohttp's error quotes the URLs it was sent to (a redirect's
        # Location, which a hostile server fills as it likes).
        failure = f"downloading output {index} failed: {type(exc).__name__}"
    finally:
        if partial is not None:
            with anyio.CancelScope(shield=True):
                await to_the_end(in_io_thread, _unlink, partial)
    if failure is not None:
        raise DownloadError(failure)
    return target


async def _get(session: aiohttp.ClientSession, source: str) -> aiohttp.ClientResponse:
    """GET ``source``, sent once more at once when its kept-alive connection turns out
    closed (RFC 9112 9.3.1: the client's sessions leave that to their callers, so that
    an API call sent again goes through its limiter; a download has none)."""
    import aiohttp

    try:
        return await session.get(source, raise_for_status=False)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return await session.get(source, raise_for_status=False)


async def _on_disk(what: str, path: Path, func: Any, *args: Any) -> Any:
    """``func(*args)`` in an I/O thread, to its end even if cancelled meanwhile; an
    OSError becomes a SaveError naming ``path``."""
    try:
        return await to_the_end(in_io_thread, func, *args)
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
    # Cleanup after a failure: its own error (a name too long to have been made, say)
    # must not replace the failure's. What is left is a ``.part`` file, never an output.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _atomic_write(target: Path, chunks: Iterable[bytes]) -> None:
    if target.is_dir():
        raise IsADirectoryError(21, "is a folder", str(target))
    write_atomically(target, chunks)
