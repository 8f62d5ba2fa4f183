"""Image sources read off the loop: regular files only, size-capped, async readers.

Files are read in a thread of the loop's default executor (:func:`in_io_thread`); CPU
work runs in the package's one worker thread (:func:`in_worker`). A file object is read
until it ends (:func:`read_object`): a ``read()`` that is a coroutine (a web framework's
upload, aiohttp's ``request.content``) is awaited on the loop; a blocking one runs in the
loop's default executor, never in the package's own threads, so a reader that blocks
forever cannot stall the package's work for other requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import os
import stat
import threading
import time
from collections.abc import Iterable
from typing import Any, Final

from fashn_async._shield import foreign_cancel
from fashn_async.errors import ImageInputError, InvalidRequestError

__all__ = [
    "HAND_OVER",
    "JOIN_SLICE",
    "MAX_BODY_BYTES",
    "MAX_IMAGE_BYTES",
    "OFFLOAD_BYTES",
    "STEPS_PER_PAUSE",
    "byte_view",
    "check_body_size",
    "in_io_thread",
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
#: Largest request body sent, in bytes (the JSON with every image as base64). Neither
#: fashn-api-v1.txt nor NOTES.md gives a number; docs.fashn.ai "Troubleshooting" says
#: oversized base64 bodies fail upstream, and the project's emulator answers a body over
#: 16 MiB with 413 PayloadTooLarge (``EmulatorConfig.max_body_bytes``, the same number).
#: A larger body is refused before anything is sent. An input image may be larger (up to
#: :data:`MAX_IMAGE_BYTES`) when image preparation shrinks it first.
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: Inputs at least this large are checked and encoded in a worker thread. Below it, a hop
#: to a thread costs more than the work itself (about 80 us for 64 KiB).
OFFLOAD_BYTES: Final = 64 * 1024


def check_body_size(size: int) -> None:
    """A request body of ``size`` bytes is at most :data:`MAX_BODY_BYTES`.

    Raises:
        InvalidRequestError: naming the size, the limit and the fixes.
    """
    if size > MAX_BODY_BYTES:
        raise InvalidRequestError(
            f"the request body would be {_mib(size)} with its images as base64; the API "
            f"takes at most {MAX_BODY_BYTES // 2**20} MiB: pass prepare_images=True to "
            "resize and re-encode the images, or pass image URLs",
            name="InvalidRequest",
        )


def too_large(size: int | None = None) -> str:
    """The message for an image of ``size`` bytes (None: unknown, over the cap), over
    :data:`MAX_IMAGE_BYTES`."""
    cap = MAX_IMAGE_BYTES // 2**20
    shown = "over" if size is None or size <= MAX_IMAGE_BYTES + 1 else _mib(size)
    if shown == "over":
        shown = f"over {cap} MiB"
    return f"the image is {shown}; at most {cap} MiB is accepted (resize it, or pass a URL)"


def _mib(size: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 2**20:.1f} MiB"


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_regular(path: str | os.PathLike[str]) -> bytes | str:
    """The file's bytes (at most the cap plus one), or what makes it unreadable."""
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        kind = next((name for test, name in _KINDS if test(before.st_mode)), "not a file")
        return f" is {kind}, not a regular image file"
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        # The name may have been swapped since the stat: check what was opened.
        opened = os.fstat(fh.fileno())
        if not stat.S_ISREG(opened.st_mode):
            return " is not a regular image file"
        if opened.st_size > MAX_IMAGE_BYTES:
            return f": {too_large(opened.st_size)}"
        return fh.read(MAX_IMAGE_BYTES + 1)


def read_image_file(field: str, path: str | os.PathLike[str]) -> bytes:
    """Read a regular file of at most :data:`MAX_IMAGE_BYTES` (blocking: call in a thread).

    A FIFO, device, directory or socket is refused without being read, so nothing here
    can hang or read forever.

    Raises:
        ImageInputError: no such file, not a regular file, unreadable, empty, too large.
    """
    shown = os.fspath(path)
    try:
        data = _read_regular(path)
    except FileNotFoundError:
        raise ImageInputError(f"{field}: no such file: {shown}") from None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ImageInputError(f"{field}: cannot read {shown}: {why}") from None
    if isinstance(data, str):  # what is wrong with it
        raise ImageInputError(f"{field}: {shown}{data}")
    if not data:
        raise ImageInputError(f"{field}: the file is empty: {shown}")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageInputError(f"{field}: {shown}: {too_large(len(data))}")
    return data


async def read_object(field: str, value: Any) -> bytes | bytearray:
    """Everything a file object's ``read()`` gives until it ends, at most
    :data:`MAX_IMAGE_BYTES`.

    ``read(size)`` is called until it gives ``b""``: a stream (aiohttp's
    ``request.content``, an ``asyncio.StreamReader``, a pipe or socket) gives what has
    arrived so far on each call. A ``read()`` that is a coroutine (or returns an
    awaitable) is awaited on the loop. A blocking one runs in the loop's default executor
    (``loop.run_in_executor(None, ...)``), never in the package's own worker threads: a
    pipe that never ends holds one thread of the caller's executor until it is cancelled
    (time the call out to give up), and every client keeps its own work going.

    Raises:
        ImageInputError: the object is closed, ``read()`` fails (the message keeps the
            reader's own error; a ``CancelledError`` it raises while nothing cancels
            this task included), gives text or no bytes, or more than the cap.
    """
    if getattr(value, "closed", False) is True:
        raise ImageInputError(f"{field}: the file object is closed; pass an open one")
    parts: list[bytes | bytearray] = []
    total = 0
    sized = True
    while total <= MAX_IMAGE_BYTES:
        chunk, sized = await _read_once(field, value.read, MAX_IMAGE_BYTES + 1 - total, sized)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        if not sized:  # a read() that takes no size gives everything at once
            break
    if not total:
        raise ImageInputError(f"{field}: the file object gave no data (already read?)")
    if total > MAX_IMAGE_BYTES:
        raise ImageInputError(f"{field}: {too_large()}")
    if len(parts) == 1:
        return parts[0]
    joined: bytearray = await offload(total, join, parts)  # a slice at a time, off the loop
    return joined


async def _read_once(
    field: str, read: Any, size: int, sized: bool
) -> tuple[bytes | bytearray, bool]:
    """One ``read(size)`` (``read()`` when ``sized`` is off), checked to give bytes."""
    try:
        if inspect.iscoroutinefunction(read):
            result, sized = _call_read(read, size, sized)
            result = await result
        else:
            result, sized = await in_io_thread(_call_read, read, size, sized)
            if inspect.isawaitable(result):  # a read() that returns an awaitable
                result = await result
    except BaseException as exc:  # a CancelledError of the reader's own is its failure too
        if not isinstance(exc, Exception) and not foreign_cancel(exc):
            raise
        raise ImageInputError(
            f"{field}: the file object's read() failed: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(result, str):
        raise ImageInputError(
            f"{field}: the file object was opened in text mode; open it with 'rb'"
        )
    if not isinstance(result, bytes | bytearray | memoryview):
        raise ImageInputError(
            f"{field}: the file object's read() gave {type(result).__name__}, not bytes"
        )
    if isinstance(result, bytes):
        return result, sized
    # A bytearray or memoryview may be the reader's own buffer, filled again on its next
    # read(): copied now, a slice at a time, off the loop.
    view = byte_view(field, result)
    copied: bytearray = await offload(view.nbytes, join, [view])
    return copied, sized


def byte_view(field: str, value: bytes | bytearray | memoryview) -> memoryview:
    """``value``'s bytes as a flat memoryview of bytes (no copy): a memoryview of any
    shape or item type is read byte by byte, so a slice of it is a slice of bytes.

    Raises:
        ImageInputError: a memoryview that is released, not contiguous, or of no bytes.
    """
    try:
        view = memoryview(value)
        flat = view.ndim == 1 and view.itemsize == 1 and view.c_contiguous
        return view if flat else view.cast("B")
    except (TypeError, ValueError) as exc:
        raise ImageInputError(
            f"{field}: the memoryview cannot be read as bytes ({exc}); pass bytes(view)"
        ) from None


def _call_read(read: Any, size: int, sized: bool) -> tuple[Any, bool]:
    if sized:
        try:
            return read(size), True
        except TypeError:
            if _takes_a_size(read):  # the reader's own TypeError: it is the reader's error
                raise
    return read(), False


def _takes_a_size(read: Any) -> bool:
    """Whether ``read`` accepts one positional argument (unknown: it is taken not to)."""
    try:
        inspect.signature(read).bind(0)
    except (TypeError, ValueError):
        return False
    return True


async def offload(size: int, func: Any, *args: Any) -> Any:
    """``func(*args)`` in a worker thread when ``size`` makes it worth the hop."""
    if size >= OFFLOAD_BYTES:
        return await in_worker(func, *args)
    return func(*args)


#: One worker thread for CPU work. Two threads that both want the GIL trade it between
#: their chunks and starve the event loop: CPython forces a switch to a thread that has
#: waited its 5 ms switch interval only if no other switch happened meanwhile, and two
#: busy workers always make one (benchmarks/bench_loop_lag.py: loop stalls of 23-50 ms
#: with two workers, at most 13 ms with one). CPU work goes no faster in more threads,
#: and what runs here (base64, image checks, a refit, image preparation) keeps far ahead
#: of the API's 25 generations a minute. Blocking I/O goes elsewhere (:func:`in_io_thread`).
_WORKERS: Final = 1
_executor: concurrent.futures.ThreadPoolExecutor | None = None
#: Seconds a worker sleeps between two chunks of work, the GIL released: long enough
#: for a thread waiting for it (the event loop) to be woken and take it.
HAND_OVER: Final = 0.0005
#: Steps of a loop of tiny steps (a JPEG's segments) between two pauses: about 1 ms.
STEPS_PER_PAUSE: Final = 2048
_creating = threading.Lock()


def _cpu_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The package's worker, shared by every event loop of the process (threads know no
    loop), made on first use in each process."""
    global _executor
    with _creating:  # loops in several threads may ask at once: still one worker
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                _WORKERS, thread_name_prefix="fashn-async"
            )
        return _executor


def _forget_the_parents_worker() -> None:
    """In a forked child: the parent's worker thread does not exist here (a pool that
    believes it has its thread would queue work forever); the next use makes one."""
    global _executor, _creating
    _executor = None
    _creating = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_forget_the_parents_worker)


def let_go() -> None:
    """Between two chunks of CPU work in a worker: hand the GIL to a thread waiting for it.

    Releasing the GIL and taking it straight back (``time.sleep(0)``) hands nothing
    over: the waiting thread must first be woken and scheduled, and by then the worker
    holds the GIL again, so the loop waits out the whole switch interval (5 ms) after
    each of its system calls. Sleeping :data:`HAND_OVER` lets it in. The cost is that
    pause per chunk in the worker (about 30 ms of wall time, no CPU, per 8 MiB image),
    so a loop of tiny steps calls it every :data:`STEPS_PER_PAUSE` steps. On the event
    loop's own thread it does nothing: there the loop must keep the GIL; nor on the main
    thread with no loop running (plain synchronous use, as a simulation refitting in
    line: there is no loop to hand the GIL to, and the pauses would add up).
    """
    if (
        asyncio._get_running_loop() is None  # the C-level check, no exception
        and threading.current_thread() is not threading.main_thread()
    ):
        time.sleep(HAND_OVER)


#: Bytes copied between two :func:`let_go` calls by :func:`join`.
JOIN_SLICE: Final = 2**20


def join(parts: Iterable[bytes | bytearray | memoryview]) -> bytearray:
    """``b"".join(parts)``, grown a slice at a time with :func:`let_go` between.

    Joining 20 MB in one call holds the GIL for milliseconds (allocating and faulting in
    the pages is most of it); in a worker thread that is as long as the event loop
    cannot run. The buffer grows by appends (which glibc's realloc remaps rather than
    copies), so no single step costs more than a slice.
    """
    out = bytearray()
    for part in parts:
        chunk = memoryview(part)
        if chunk.ndim != 1 or chunk.itemsize != 1:  # slices must count bytes, not items
            chunk = chunk.cast("B")
        for start in range(0, chunk.nbytes, JOIN_SLICE):
            out += chunk[start : start + JOIN_SLICE]
            let_go()
    return out


async def in_worker(func: Any, *args: Any) -> Any:
    """``func(*args)`` in the package's worker thread, kept for CPU work.

    One, and reused: starting a thread blocks the loop until the thread runs, which can
    take tens of milliseconds while other threads hold the GIL, and a second worker
    would starve the loop of the GIL (:data:`_WORKERS`). Through
    ``loop.run_in_executor``, so an event loop that fast-forwards its clock in tests
    (looptime) knows a thread is working and waits for it instead of racing its clock
    ahead.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_cpu_executor(), functools.partial(func, *args))


async def in_io_thread(func: Any, *args: Any) -> Any:
    """``func(*args)``, blocking I/O (reading a file, writing and fsyncing one), in the
    loop's default executor, as ``asyncio.to_thread`` runs it.

    Apart from the CPU worker: a read that stalls (a network file system) then holds up
    only its own call, never every client's encoding; and a thread waiting in a system
    call does not hold the GIL.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args))
