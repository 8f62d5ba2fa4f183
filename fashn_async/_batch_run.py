"""One run of a batch's input: the reader, one worker per item, the result stream.

:class:`_Run` is what a :class:`~fashn_async._batch.Batch` handle starts in its client's
:class:`~fashn_async._batch.BatchGroup`. It never refers to the handle, so the handle can
be freed (and the run then cancelled) while the run goes on. Every item ends as one
:class:`BatchResult`: a bad item, a failed prediction and a raising hook are values, never
an exception out of the task group; what ends the batch early (out of credits, the input
raising, a hook raising) is kept in :attr:`_Run.stop` and raised by the handle after the
results before it; from then on no item that was not sent is sent. A ``BaseException``
that is not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) raised by the input
or a hook is kept in :attr:`_Run.fatal`: the run is cancelled and the handle re-raises it
as is; it never reaches the client's task group. A ``CancelledError`` that user code
raises while nothing cancels the batch is that code's failure, as an ``Exception`` is
(:func:`~fashn_async._batch_item.is_failure`); only the batch's own cancellation ends it
quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs

from fashn_async._batch_item import HookCalls, Item, fatal_in, is_failure
from fashn_async._coerce import coerce_request
from fashn_async._events import BatchEvents, BatchProgress
from fashn_async._models import Prediction, PredictionStatus, Request
from fashn_async._results import BatchResult
from fashn_async._shield import until_set
from fashn_async._stream import ResultStream
from fashn_async._validators import check_id
from fashn_async.errors import (
    BatchClosedError,
    BatchInputError,
    FashnError,
    InvalidRequestError,
    OutOfCreditsError,
)

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from fashn_async._engine import Engine

__all__: list[str] = []


class _Run(HookCalls):
    """One run of a batch's input: a reader, one worker per item, the result stream.

    It never refers to its :class:`Batch` handle, so that the handle can be freed (and
    the run then cancelled) while the run goes on.
    """

    def __init__(
        self,
        engine: Engine,
        requests: Iterable[Any] | AsyncIterable[Any],
        *,
        events: BatchEvents,
        progress: BatchProgress,
        max_pending: int,
        cancel_on_exit: bool,
    ) -> None:
        self.engine = engine
        self.requests = requests
        self.events = events
        self.cancel_on_exit = cancel_on_exit
        self.progress = progress
        self.scope = anyio.CancelScope()
        self.results = ResultStream()
        #: Items read and not yet taken by the consumer: bounds memory and read-ahead.
        self.room = anyio.Semaphore(max_pending)
        self.ended = anyio.Event()
        #: Why the run was closed before its consumer reached the end (None: it was not).
        self.closed: str | None = None
        #: What ends the batch early; raised once the results before it are taken.
        self.stop: FashnError | None = None
        #: The index of the out-of-credits item :attr:`stop` names (the lowest refused).
        self._credits_at: int | None = None
        #: A BaseException (not an Exception) of the input or a hook: re-raised as is.
        self.fatal: BaseException | None = None
        #: Items started and not yet sent: a stop refuses them at once.
        self._unsent: set[Item] = set()
        #: The stop that refuses them (a hook's, out of credits; not an input error).
        self._refusing: FashnError | None = None
        #: Called with the run once it is closed or exhausted (its group forgets it).
        self.forget: Callable[[_Run], None] | None = None

    def cancel(self, reason: str) -> None:
        """Close the run: cancel its tasks (and so its predictions); results are dropped."""
        if self.closed is None:
            self.closed = reason
        self.scope.cancel()
        if self.ended.is_set():
            self.results.drop()
        if self.forget is not None:
            self.forget(self)

    async def close(self, reason: str) -> None:
        """:meth:`cancel`, then wait until every task of the run has ended, its remote
        cancels sent, however often the caller is cancelled meanwhile.

        Raises:
            asyncio.CancelledError: the caller was cancelled meanwhile (once all ended).
        """
        self.cancel(reason)
        if await until_set(self.ended):
            raise asyncio.CancelledError

    def never_ran(self) -> None:
        """Its task was cancelled before it began: end the stream all the same."""
        if not self.ended.is_set():
            self.results.end()
            self.results.drop()
            self.ended.set()

    def exhausted(self) -> None:
        """The consumer took every result."""
        self.results.drop()
        if self.forget is not None:
            self.forget(self)

    def take_stop(self) -> FashnError | None:
        """The error that ended the batch early, once."""
        stop, self.stop = self.stop, None
        return stop

    async def supervise(self) -> None:
        """Read the input and start a worker per item; end the stream when all are done."""
        try:
            with self.scope:
                async with anyio.create_task_group() as workers:
                    await self._read(workers)
        except BaseException as exc:
            if is_failure(exc):  # a bug of ours: end the batch with it, never a raw group
                error = FashnError(f"the batch failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                self._stop(error)
            elif (fatal := fatal_in(exc)) is not None:
                self._fatal(fatal)  # never into the client's task group
            else:  # cancelled from outside: the client is closing
                raise
        finally:
            self.results.end()
            self.ended.set()
            if self.closed is not None and self.fatal is None:
                self.results.drop()

    async def _read(self, workers: TaskGroup) -> None:
        index = 0
        try:
            if isinstance(self.requests, AsyncIterable):
                source: Any = aiter(self.requests)
                is_async = True
            else:
                source, is_async = iter(self.requests), False
        except BaseException as exc:
            self._input_raised(index, exc)
            return
        try:
            while True:
                await self.room.acquire()
                if self.stop is not None:
                    return
                try:
                    item = await anext(source) if is_async else next(source)
                except (StopAsyncIteration, StopIteration) as exc:
                    if isinstance(exc, StopAsyncIteration) == is_async:  # its own end
                        return
                    self._input_raised(index, exc)  # the other: a failure of the input
                    return
                except BaseException as exc:
                    self._input_raised(index, exc)
                    return
                self.progress.read += 1
                work = Item(index, item)
                if not isinstance(item, Prediction):  # (submitted before: never refused)
                    self._unsent.add(work)
                self._notify(work)
                workers.start_soon(self._work, work)
                index += 1
        finally:
            if inspect.isasyncgen(source):  # ours to close, not the garbage collector's
                with contextlib.suppress(Exception):
                    await source.aclose()

    def _input_raised(self, index: int, exc: BaseException) -> None:
        """The input raised, opened or read at ``index``: its failure (an Exception, a
        CancelledError of its own) ends the batch (BatchInputError), another
        BaseException reaches the consumer as is, and our own cancellation goes on up."""
        if is_failure(exc):
            self._input_failed(index, exc)
        elif fatal_in(exc) is None:
            raise exc
        else:
            self._fatal(exc)

    def _input_failed(self, index: int, exc: BaseException) -> None:
        error = BatchInputError(
            f"reading item {index} of the batch's input raised {type(exc).__name__}: {exc} "
            f"(the {index} item(s) read before it were finished first)"
        )
        error.__cause__ = exc
        self._stop(error, refuse=False)

    def _stop(self, error: FashnError, *, refuse: bool = True) -> None:
        """End the batch early with ``error``; with ``refuse``, no item not yet sent is
        sent any more (an input error lets the items read before it finish)."""
        if self.stop is None:
            self.stop = error
        if refuse and self._refusing is None:
            self._refusing = error
            for item in list(self._unsent):
                self._refuse(item)

    def _fatal(self, exc: BaseException) -> None:
        """A BaseException of the input or a hook: cancel the run, re-raise it to the
        consumer as is."""
        if self.fatal is None:
            self.fatal = exc
            if self.closed is None:
                self.closed = f"it raised {type(exc).__name__}"
        self.scope.cancel()

    def _refuse(self, item: Item) -> FashnError:
        """Keep ``item`` from being sent: the batch stopped; fail it with that reason."""
        self._unsent.discard(item)
        if item.refusal is None:
            stop = self._refusing
            assert stop is not None
            item.refusal = type(stop)(
                f"batch item {item.index} was not sent: {stop.message}",
                status_code=stop.status_code,
            )
            item.refusal.__cause__ = stop
            item.scope.cancel()
        return item.refusal

    # -- one item ----------------------------------------------------------------------

    async def _work(self, item: Item) -> None:
        result = await self._outcome(item)
        progress = self.progress
        if result.ok:
            progress.done += 1
        else:
            progress.failed += 1
        if not self._notify(item) and result.ok:  # the last progress hook raised
            assert item.hook_error is not None
            progress.done -= 1
            progress.failed += 1
            result = attrs.evolve(result, output=(), error=item.hook_error)
        self.results.put(result)  # dropped if the consumer left: nobody will read it

    async def _outcome(self, item: Item) -> BatchResult:
        status: PredictionStatus | None = None
        error: FashnError | None = None
        try:
            with item.scope:
                status = await self._drive(item)
                status.raise_for_status()
        except FashnError as exc:
            error = exc
        except BaseException as exc:  # a bug of ours, KeyboardInterrupt reading the item...
            if not is_failure(exc):  # ...or a CancelledError of a Mapping item's own
                fatal = fatal_in(exc)
                if fatal is None:  # cancelled: the batch is closing
                    raise
                self._fatal(fatal)  # never out of this task (asyncio would re-raise it)
            error = FashnError(f"batch item {item.index}: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        finally:
            self._unsent.discard(item)
        refused = item.refusal is not None and item.hook_error is None
        if refused and status is None and item.prediction_id is None:
            return BatchResult(index=item.index, request=item.raw, error=item.refusal)
        if item.hook_error is not None:
            error = item.hook_error
            if item.prediction_id is not None and status is None and not self.cancel_on_exit:
                await self.engine.cancel_quietly(item.prediction_id)  # it never runs unseen
        if isinstance(error, OutOfCreditsError):
            self._out_of_credits(item.index, error)
        if error is not None:
            return BatchResult(
                index=item.index,
                request=item.raw,
                prediction_id=item.prediction_id,
                error=error,
            )
        if status is None:  # its scope cancelled, neither refused nor by a hook: closing
            error = BatchClosedError(f"batch item {item.index}: the batch was closed")
            return BatchResult(index=item.index, request=item.raw, error=error)
        return BatchResult(
            index=item.index,
            request=item.raw,
            prediction_id=status.id,
            output=status.output or (),
            transport=self.engine.transport,
        )

    def _out_of_credits(self, index: int, error: OutOfCreditsError) -> None:
        """Stop the batch, naming the lowest index refused (answers may come out of order)."""
        if self._credits_at is not None and index >= self._credits_at:
            return
        stop = OutOfCreditsError(
            f"the batch stopped submitting at input {index}: out of credits "
            f"({self.progress.submitted} submitted); {error.message}",
            status_code=error.status_code,
        )
        if self._credits_at is not None:  # ours, naming a later index: this one is first
            self.stop = stop
        self._credits_at = index
        self._stop(stop)

    async def _drive(self, item: Item) -> PredictionStatus:
        await anyio.lowlevel.checkpoint()  # a batch closed before this item began: stop here
        if item.hook_error is not None:
            raise item.hook_error
        raw = item.raw
        if isinstance(raw, Prediction):
            try:
                prediction_id = check_id(raw.id)  # the rule status() and cancel() apply
            except InvalidRequestError as exc:
                raise _at_index(item.index, exc) from None
            return await self.engine.wait_existing(
                prediction_id,
                cancel=lambda: self.cancel_on_exit and self._may_cancel(item, prediction_id),
                owner=self,
                on_started=lambda: self._submitted(item, prediction_id),
            )
        request = _request_at(item.index, raw)
        try:
            prepared = await self.engine.prepare(request)
        except InvalidRequestError as exc:
            raise _at_index(item.index, exc) from exc
        except FashnError:
            raise
        except Exception as exc:  # reading the item's images failed: a local problem
            raise InvalidRequestError(
                f"batch item {item.index}: {type(exc).__name__}: {exc}"
            ) from exc
        return await self.engine.submit_and_wait(
            prepared,
            on_sending=lambda: self._sending(item),
            on_submitted=lambda prediction_id: self._submitted(item, prediction_id),
            on_not_created=lambda: self._not_created(item),
            cancel=lambda: self.cancel_on_exit and self._may_cancel(item, item.prediction_id),
            may_cancel=lambda prediction_id: self._may_cancel(item, prediction_id),
            owner=self,
        )


def _request_at(index: int, raw: Any) -> Request:
    """coerce_request, with the item's index in any error; nothing raw escapes."""
    try:
        return coerce_request(raw)
    except InvalidRequestError as exc:
        raise _at_index(index, exc) from exc


def _at_index(index: int, error: InvalidRequestError) -> InvalidRequestError:
    return type(error)(f"batch item {index}: {error.message}", name=error.name)
