"""Image sources read off the loop: regular files only, size-capped, async readers.

Reading runs in a few reused worker threads (:func:`in_worker`); a file object whose
``read()`` is a coroutine (a web framework's upload) is awaited on the loop instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import os
import stat
import time
from collections.abc import Iterable
from typing import Any, Final

from fashn_async.errors import ImageInputError

__all__ = [
    "MAX_IMAGE_BYTES",
    "OFFLOAD_BYTES",
    "in_worker",
    "join",
    "let_go",
    "offload",
    "read_image_file",
    "read_object",
    "too_large",
]

#: Largest image accepted, in bytes (decoded). No byte limit is documented; the largest
#: image the docs describe is 6000 px on the longest edge (4K endpoints, docs.fashn.ai
#: "Image Preprocessing Best Practices"; 2000 px for tryon-v1.6, NOTES.md), which a JPEG
#: holds in well under 50 MiB, and oversized base64 bodies fail upstream with HTTP 500
#: (docs.fashn.ai "Troubleshooting"). 50 MiB also keeps ``/dev/zero``-like sources bounded.
MAX_IMAGE_BYTES: Final = 50 * 1024 * 1024
#: Inputs at least this large are checked and encoded in a worker thread. Below it, a hop
#: to a thread costs more than the work itself (about 80 us for 64 KiB).
OFFLOAD_BYTES: Final = 64 * 1024


def too_large(size: int) -> str:
    """The message for an image of ``size`` bytes, over :data:`MAX_IMAGE_BYTES`."""
    return (
        f"the image is {size / 2**20:.1f} MiB; at most {MAX_IMAGE_BYTES // 2**20} MiB is "
        "accepted (resize it, or pass a URL)"
    )


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
        raise ImageInputError(f"{field}: {shown}: {too_large(len(data))}")
    return data


async def read_object(field: str, value: Any) -> bytes:
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
        raise ImageInputError(f"{field}: {too_large(len(data))}")
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
#: The package's worker threads, shared by every event loop (threads know no loop).
_EXECUTOR: Final = concurrent.futures.ThreadPoolExecutor(_WORKERS, thread_name_prefix="fashn-async")


def let_go() -> None:
    """Between two chunks of CPU work: hand the GIL over if another thread wants it.

    A worker thread holding the GIL keeps it until another thread has waited the whole
    switch interval (5 ms) for it, and the event loop takes it again after every system
    call, so a loop beside a busy worker waits up to 5 ms per call. Sleeping 0 lets go
    at once. On the event loop's own thread it does nothing: there the loop must keep
    the GIL, not give it to a worker.
    """
    if asyncio._get_running_loop() is None:  # the C-level check, no exception
        time.sleep(0)


#: Bytes copied between two :func:`let_go` calls by :func:`join`.
JOIN_SLICE: Final = 2**20


def join(parts: Iterable[bytes]) -> bytearray:
    """``b"".join(parts)``, grown a slice at a time with :func:`let_go` between.

    Joining 20 MB in one call holds the GIL for milliseconds (allocating and faulting in
    the pages is most of it); in a worker thread that is as long as the event loop
    cannot run. The buffer grows by appends (which glibc's realloc remaps rather than
    copies), so no single step costs more than a slice.
    """
    out = bytearray()
    for part in parts:
        chunk = memoryview(part)
        for start in range(0, chunk.nbytes, JOIN_SLICE):
            out += chunk[start : start + JOIN_SLICE]
            let_go()
    return out


async def in_worker(func: Any, *args: Any) -> Any:
    """``func(*args)`` in one of a few worker threads kept for blocking work.

    Few, and reused: starting a thread blocks the loop until the thread runs, which can
    take tens of milliseconds while other threads hold the GIL; and more threads than
    cores cannot make CPU-bound work go faster. Through ``loop.run_in_executor``, so an
    event loop that fast-forwards its clock in tests (looptime) knows a thread is
    working and waits for it instead of racing its clock ahead.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(func, *args))
