"""The streaming batch: many requests, bounded in flight, results as they finish.

Input is pulled lazily, only when there is room (memory stays O(in flight) for a
generator of a million pairs). Each request becomes one :class:`BatchResult`, in
completion order; a failure is a value, never a cancelled task group. Leaving early --
``break``, ``aclose()``, an exception in the loop body, cancelling the consumer -- cancels
every prediction still running on the server and leaves no task behind.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from fashn_async._models import ModelRequest, Prediction, Request, TryOnRequest
from fashn_async._results import BatchResult
from fashn_async.errors import FashnError, InvalidRequestError, OutOfCreditsError

if TYPE_CHECKING:
    from types import TracebackType

    from fashn_async._engine import Engine

__all__ = ["Batch", "BatchProgress", "BatchInput", "coerce_request"]

#: What one batch item may be: a request, a dict of TryOnRequest fields (or of
#: ``model_name``/``inputs``), a ``(model_image, garment_image, category)`` tuple, or a
#: :class:`Prediction` submitted earlier, which is polled and never submitted again.
BatchInput = Request | Prediction | Mapping[str, Any] | tuple[Any, ...]


def coerce_request(item: Any) -> Request:
    """Turn one batch item into a request, or raise InvalidRequestError."""
    if isinstance(item, TryOnRequest | ModelRequest):
        return item
    if isinstance(item, Mapping):
        if "model_name" in item:
            return ModelRequest(**item)
        try:
            return TryOnRequest(**item)
        except TypeError as exc:
            raise InvalidRequestError(f"bad batch item: {exc}") from None
    if isinstance(item, tuple) and len(item) == 3:
        return TryOnRequest(model_image=item[0], garment_image=item[1], category=item[2])
    raise InvalidRequestError(
        "a batch item must be a TryOnRequest, a ModelRequest, a dict of their fields or a "
        f"(model_image, garment_image, category) tuple, got {type(item).__name__}"
    )


@attrs.define
class BatchProgress:
    """Live counts of a batch, for progress displays.

    Attributes:
        read: Items pulled from the input so far.
        submitted: Predictions created on the server.
        running: Submitted and not finished.
        done: Completed try-ons.
        failed: Items that ended with an error (invalid, failed, canceled, uncertain).
    """

    read: int = 0
    submitted: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        """Items with a result."""
        return self.done + self.failed


class Batch:
    """An async iterator of :class:`BatchResult`; see ``AsyncFashn.batch``."""

    def __init__(
        self,
        engine: Engine,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        raise_on_error: bool,
        on_progress: Callable[[BatchProgress], None] | None,
        max_pending: int,
        on_sending: Callable[[int], Awaitable[None] | None] | None = None,
        on_submitted: Callable[[int, str], None] | None = None,
        on_not_created: Callable[[int], None] | None = None,
        cancel_on_exit: bool = True,
    ) -> None:
        self._engine = engine
        self._on_sending = on_sending
        self._on_submitted = on_submitted
        self._on_not_created = on_not_created
        self._cancel_on_exit = cancel_on_exit
        self._requests = requests
        self._raise_on_error = raise_on_error
        self._on_progress = on_progress
        self._max_pending = max_pending
        self.progress = BatchProgress()
        # Weak, so that a plain `break` lets the generator be finalized (asyncio then
        # closes it, which cancels what is running); aclose()/`async with` do it at once.
        self._iterator: weakref.ref[AsyncIterator[BatchResult]] | None = None

    def __repr__(self) -> str:
        return f"<Batch {self.progress}>"

    def __aiter__(self) -> AsyncIterator[BatchResult]:
        iterator = self._iterator() if self._iterator is not None else None
        if iterator is None:
            iterator = self._stream()
            self._iterator = weakref.ref(iterator)
        return iterator

    async def __anext__(self) -> BatchResult:
        return await self.__aiter__().__anext__()

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: cancel what is running on the server, wait for our tasks to end."""
        iterator = self._iterator() if self._iterator is not None else None
        if iterator is not None:
            await iterator.aclose()  # type: ignore[attr-defined]

    def _changed(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.progress)

    async def _stream(self) -> AsyncIterator[BatchResult]:
        send, receive = anyio.create_memory_object_stream[BatchResult](self._max_pending)
        supervisor = asyncio.ensure_future(self._supervise(send))
        self._engine.batches.add(supervisor)
        try:
            async with receive:
                async for result in receive:
                    if self._raise_on_error and result.error is not None:
                        raise result.error
                    yield result
            await supervisor  # re-raises what stopped the batch (input error, no credits)
        finally:
            if not supervisor.done():
                supervisor.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([supervisor])
            self._engine.batches.discard(supervisor)

    async def _supervise(self, send: MemoryObjectSendStream[BatchResult]) -> None:
        room = anyio.Semaphore(self._max_pending)
        stop: list[BaseException] = []
        async with send, anyio.create_task_group() as tg:
            index = 0
            async for item in _aiter(self._requests):
                await room.acquire()
                if stop:
                    break
                self.progress.read += 1
                self._changed()
                tg.start_soon(self._work, index, item, send.clone(), room, stop)
                index += 1
        if stop:
            raise stop[0]

    async def _work(
        self,
        index: int,
        item: Any,
        send: MemoryObjectSendStream[BatchResult],
        room: anyio.Semaphore,
        stop: list[BaseException],
    ) -> None:
        progress = self.progress
        request: Any = item
        prediction_id: str | None = None

        def sending() -> Awaitable[None] | None:
            return None if self._on_sending is None else self._on_sending(index)

        def not_created() -> None:
            if self._on_not_created is not None:
                self._on_not_created(index)

        def submitted(pid: str) -> None:
            nonlocal prediction_id
            prediction_id = pid
            progress.submitted += 1
            progress.running += 1
            if self._on_submitted is not None:
                self._on_submitted(index, pid)
            self._changed()

        async with send:
            try:
                if isinstance(item, Prediction):
                    submitted(item.id)
                    status = await self._engine.wait_existing(item.id, cancel=self._cancel_on_exit)
                else:
                    request = coerce_request(item)
                    prepared = await self._engine.prepare(request)
                    status = await self._engine.submit_and_wait(
                        prepared,
                        on_sending=sending,
                        on_submitted=submitted,
                        on_not_created=not_created,
                        cancel=self._cancel_on_exit,
                    )
                status.raise_for_status()
                result = BatchResult(
                    index=index,
                    request=request,
                    prediction_id=status.id,
                    output=status.output or (),
                    transport=self._engine.transport,
                )
            except FashnError as error:
                if isinstance(error, OutOfCreditsError) and not stop:
                    stop.append(
                        OutOfCreditsError(
                            f"the batch stopped submitting at input {index}: out of credits "
                            f"({progress.submitted} submitted); {error.message}",
                            status_code=error.status_code,
                        )
                    )
                result = BatchResult(
                    index=index, request=request, prediction_id=prediction_id, error=error
                )
            if prediction_id is not None:
                progress.running -= 1
            if result.ok:
                progress.done += 1
            else:
                progress.failed += 1
            self._changed()
            await send.send(result)
            room.release()


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
