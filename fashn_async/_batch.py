"""The streaming batch: one input, one stream of results, bounded in flight.

A :class:`Batch` is a handle on one run of its input. The run -- a supervisor reading
the input and one worker per item -- lives in a task group owned by the client
(:class:`BatchGroup`), never in the consumer's frame or the garbage collector's hands.

The iteration contract (tested in ``tests/test_batch_stream.py`` and
``tests/test_batch_exits.py``):

- Each input item is read once and submitted at most once; each index is yielded once,
  however the batch is driven: ``async for``, ``anext()``, a second ``async for`` after a
  ``break`` (it continues the same stream), ``async with``, several tasks pulling.
- Input is read lazily: at most ``max_pending`` items are read and not yet taken by the
  consumer. An exhausted batch keeps raising ``StopAsyncIteration``.
- ``aclose()``, leaving ``async with``, ``raise_on_error`` raising and closing the client
  close the batch at once: running predictions are cancelled on the server (unless
  ``cancel_on_exit=False``) and every task has ended when the call returns. Using a
  closed batch raises :class:`~fashn_async.errors.BatchClosedError`. A second
  ``aclose()`` while one is under way returns once that one is complete.
- A result is taken from the run's stream without waiting: a consumer cancelled at any
  point (even in the loop turn a result reached it) leaves it for the next ``anext()``,
  and the result's ``max_pending`` room is given back once, when it is yielded.
- A ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
  ``SystemExit``) raised by the input or a hook cancels that batch's work and is
  re-raised as is by its next ``anext()``; it never reaches the client's task group,
  so the client's other batches go on.
- The handle dropped before its end (``break`` out of ``async for r in
  client.batch(...)``, an exception in that loop's body, its consumer cancelled) closes
  the batch in the same way, the moment the interpreter frees the handle (at once on
  CPython); ``async with`` makes this explicit and awaited on any interpreter. What
  escapes ``anext()`` never holds the handle (not in its traceback's frames), so an
  exception kept afterwards (a stored TimeoutError, an anyio task group's cancel) does
  not keep a dropped batch going. A handle that is kept (``b = client.batch(...)``)
  stays open after a ``break`` or a cancellation: it keeps at most ``max_pending`` items
  going, for the next ``async for`` to yield.
- User code the batch calls (the input, a hook, an image's ``read()``) raising a
  ``CancelledError`` while nothing cancels the batch fails as if it raised an Exception.
- A batch is driven on its client's event loop only: ``anext()`` elsewhere raises
  :class:`~fashn_async.errors.EventLoopError` and starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from fashn_async._batch_run import _Run
from fashn_async._events import BatchEvents, BatchProgress
from fashn_async._redact import safe_repr
from fashn_async._results import BatchInput, BatchResult
from fashn_async._shield import outlive_cancels, until_set
from fashn_async.errors import BatchClosedError, ClientClosedError

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup

    from fashn_async._engine import Engine

__all__ = ["Batch", "BatchGroup"]

logger = logging.getLogger("fashn_async")


class BatchGroup:
    """The task group in which every batch of one client runs; the client closes it.

    It runs in a task of its own, started with the first batch, so it does not depend on
    which task opens or closes the client (a web app's startup and shutdown hooks are
    often two). Closing it closes every batch still open and waits for their tasks.
    """

    def __init__(self) -> None:
        self._runs: set[_Run] = set()
        #: Runs whose task has not ended (or never began: the client closed first).
        self._live: set[_Run] = set()
        self._queued: list[_Run] = []
        self._host: asyncio.Task[None] | None = None
        self._group: TaskGroup | None = None
        self._closed = False

    @safe_repr
    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<BatchGroup {state} batches={len(self._runs)}>"

    def __len__(self) -> int:
        """Batches started and not yet exhausted or closed."""
        return len(self._runs)

    def start(self, run: _Run) -> None:
        """Run ``run`` in the group (it starts at the next turn of the loop).

        Raises:
            ClientClosedError: the client was closed.
        """
        if self._closed:
            raise ClientClosedError("this client was closed; create a new AsyncFashn")
        self._runs.add(run)
        self._live.add(run)
        run.forget = self._runs.discard
        if self._group is not None:
            self._group.start_soon(self._supervise, run)
            return
        self._queued.append(run)
        if self._host is None:
            self._host = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        async with anyio.create_task_group() as group:
            self._group = group
            for run in self._queued:
                group.start_soon(self._supervise, run)
            self._queued.clear()
            await anyio.sleep_forever()

    async def _supervise(self, run: _Run) -> None:
        try:
            await run.supervise()
        finally:
            self._live.discard(run)

    async def aclose(self) -> None:
        """Close every open batch (cancelling on the server what they run) and wait until
        every task has ended, however often the caller is cancelled meanwhile.

        Raises:
            asyncio.CancelledError: the caller was cancelled meanwhile (once all ended).
        """
        self._closed = True
        for run in list(self._runs):
            run.cancel("its client was closed")
        host, self._host = self._host, None
        cancelled = False
        if host is not None:
            host.cancel()
            cancelled = await outlive_cancels(host)  # every task ended, cancelled or not
            self._group = None
            if not host.cancelled() and host.exception() is not None:  # a bug of ours
                logger.error("the batch task group failed", exc_info=host.exception())
        for run in self._live:  # cancelled before their task took its first step
            run.never_ran()
        self._live.clear()
        self._queued.clear()
        if cancelled:
            raise asyncio.CancelledError


class Batch:
    """One stream of :class:`BatchResult` for one input; made by ``AsyncFashn.batch``.

    Drive it with ``async for``, ``anext()``, ``async with`` or from several tasks at
    once: it is one stream, never restarted (see the module docstring for the contract).

    Attributes:
        progress: Live counts (:class:`BatchProgress`).
    """

    def __init__(
        self,
        group: BatchGroup,
        engine: Engine,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        raise_on_error: bool,
        events: BatchEvents,
        max_pending: int,
        cancel_on_exit: bool,
    ) -> None:
        self._group = group
        self._engine = engine
        self._requests = requests
        self._raise_on_error = raise_on_error
        self._events = events
        self._max_pending = max_pending
        self._cancel_on_exit = cancel_on_exit
        self.progress = BatchProgress()
        self._run: _Run | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._closed: str | None = None
        #: Set once a close (the first aclose(), say) is complete; later ones wait for it.
        self._close_done: anyio.Event | None = None
        self._exhausted = False

    def leave_running(self) -> None:
        """From now on, leave this batch's predictions running on the server when it is
        left early (as ``cancel_on_exit=False`` does), including those already being
        polled: for a caller that can no longer record what it cancels (a job whose
        journal refuses writes), so that what it recorded stays true. Cannot be undone.
        """
        self._cancel_on_exit = False
        if self._run is not None:
            self._run.cancel_on_exit = False

    @safe_repr
    def __repr__(self) -> str:
        if self._closed is not None:
            state = "closed"
        elif self._exhausted:
            state = "exhausted"
        else:
            state = "running" if self._run is not None else "new"
        return f"<Batch {state} {self.progress}>"

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> BatchResult:
        """The next result to finish.

        Raises:
            StopAsyncIteration: every result was yielded.
            BatchClosedError: the batch was closed.
            EventLoopError: called on an event loop other than the client's (nothing is
                started there; the batch stays usable on its own loop).
            OutOfCreditsError, BatchInputError, EventHookError: what ended the batch
                early, once the results before it were yielded.
            FashnError: with ``raise_on_error``, the first failure (the batch is closed).
            BaseException: a ``KeyboardInterrupt``, ``SystemExit`` or other exception
                that is not an ``Exception``, raised by the input or a hook, as is (the
                batch's work was cancelled first; the batch is closed).
        """
        run = self._open()
        if self._exhausted:
            raise StopAsyncIteration
        try:
            result = await _next_result(run)
        except BaseException:
            # What escapes keeps this frame in its traceback, and the traceback may be
            # kept (a TimeoutError stored for a report, an anyio task group's cancel):
            # not the handle with it, or a batch nobody else keeps would go on sending.
            del self
            raise
        if result is None:
            if run.fatal is not None:
                await self._close(run.closed or "its input or a hook raised")
                raise run.fatal
            self._end(run)
        run.room.release()  # once per result taken
        if self._raise_on_error and result.error is not None:
            await self._close("raise_on_error raised its first failure")
            raise result.error
        return result

    def _end(self, run: _Run) -> NoReturn:
        """The stream ended: raise what ended it (closed, stopped, exhausted)."""
        if run.closed is not None or self._closed is not None:
            raise BatchClosedError(f"this batch was closed: {self._closed or run.closed}")
        self._exhausted = True
        run.exhausted()
        if self._finalizer is not None:
            self._finalizer.detach()
        stop = run.take_stop()
        if stop is not None:
            raise stop from stop.__cause__
        raise StopAsyncIteration

    async def __aenter__(self) -> Batch:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close("its async with block was left")

    async def aclose(self) -> None:
        """Close the batch: cancel what runs on the server, wait for its tasks to end.

        Results not yet yielded are dropped; iterating afterwards raises
        :class:`~fashn_async.errors.BatchClosedError`. Closing again does nothing more;
        called while another close is under way, it returns once that one is complete.
        A cancelled caller still waits for all that, then raises ``CancelledError``.

        Raises:
            EventLoopError: called on an event loop other than the client's, the batch
                started; nothing was done.
        """
        await self._close("aclose() was called")

    async def _close(self, reason: str) -> None:
        if self._run is not None:
            self._engine.transport.check_loop()  # its tasks and events are that loop's
        if self._closed is not None:  # closing or closed: return once it is done
            if self._close_done is not None and await until_set(self._close_done):
                raise asyncio.CancelledError
            return
        self._closed = reason
        self._close_done = done = anyio.Event()
        try:
            if self._finalizer is not None:
                self._finalizer.detach()
            if self._run is not None:
                await self._run.close(reason)
        finally:
            done.set()

    def _open(self) -> _Run:
        """The run, started at the first call.

        Raises:
            BatchClosedError: the batch was closed.
            EventLoopError: called on a loop other than the client's; nothing started.
            ClientClosedError: the client was closed before the run could start.
        """
        if self._closed is not None:
            raise BatchClosedError(f"this batch was closed: {self._closed}")
        self._engine.transport.check_loop()  # before any task: the group would live there
        if self._run is None:
            run = _Run(
                self._engine,
                self._requests,
                events=self._events,
                progress=self.progress,
                max_pending=self._max_pending,
                cancel_on_exit=self._cancel_on_exit,
            )
            try:
                self._group.start(run)
            except BaseException:
                run.never_ran()
                raise
            self._run = run
            self._finalizer = weakref.finalize(self, _dropped, run, asyncio.get_running_loop())
            self._finalizer.atexit = False
        return self._run


async def _next_result(run: _Run) -> BatchResult | None:
    """The next result of ``run``'s stream, or None once none will come (the stream
    ended, or the input or a hook raised a BaseException). It holds the run, never the
    handle: a cancellation escaping it must not keep the handle alive."""
    results = run.results
    while (result := results.take()) is None:  # taken at once: a cancel loses nothing
        if run.fatal is not None or results.ended or results.dropped:
            return None
        await results.changed()
    return result


def _dropped(run: _Run, loop: asyncio.AbstractEventLoop) -> None:
    """The handle was freed before its end: close the run from the loop's next turn."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs any more
        loop.call_soon_threadsafe(run.cancel, "its Batch object was dropped before its end")
