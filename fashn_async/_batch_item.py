"""A batch item's state, and the event hooks a run calls for it.

:class:`Item` is one item while a worker carries it. :class:`HookCalls` is the part of a
run (:class:`~fashn_async._batch_run._Run`) that the engine calls synchronously around
each POST (``sending``, ``submitted``, ``not_created``) and that reports progress: a hook
that raises fails its item and stops the batch, and a POST never goes out unrecorded.

What user code the batch calls raises is sorted by :func:`is_failure` and :func:`fatal_in`:
its failure (an ``Exception``, or a ``CancelledError`` nothing asked of the task), a
``BaseException`` to hand the consumer as is, or the batch's own cancellation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from fashn_async._events import BatchEvents, BatchProgress
from fashn_async._shield import foreign_cancel
from fashn_async.errors import BatchClosedError, EventHookError, FashnError

if TYPE_CHECKING:
    from fashn_async._engine import Engine

__all__ = ["HookCalls", "Item", "fatal_in", "is_failure"]


@attrs.define(eq=False)  # by identity: kept in a set
class Item:
    """One item's state while a worker carries it."""

    index: int
    #: The item as given; its result's ``request``.
    raw: Any
    prediction_id: str | None = None
    hook_error: EventHookError | None = None
    #: Why the item was not sent: the batch stopped before its POST went out.
    refusal: FashnError | None = None
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)


class HookCalls:
    """The hooks of one run's items (a base of ``_Run``, which owns this state)."""

    engine: Engine
    events: BatchEvents
    progress: BatchProgress
    scope: anyio.CancelScope
    _unsent: set[Item]
    _refusing: FashnError | None

    def _refuse(self, item: Item) -> FashnError:
        raise NotImplementedError

    def _stop(self, error: FashnError, *, refuse: bool = True) -> None:
        raise NotImplementedError

    def _fatal(self, exc: BaseException) -> None:
        raise NotImplementedError

    def _sending(self, item: Item) -> Awaitable[None] | None:
        self._may_send(item)
        written: Any = None
        try:
            written = self.events.sending(item.index)
        except BaseException as exc:
            self._hook_failed(item, "sending", exc)
        if item.hook_error is not None:
            raise item.hook_error  # the POST must not go out unrecorded
        if written is None:
            self._unsent.discard(item)
            return None
        return self._sent_down(item, written)

    def _may_send(self, item: Item) -> None:
        """Raise unless ``item``'s POST may go out now (the batch neither closed nor
        stopped)."""
        if self.scope.cancel_called:
            raise BatchClosedError("the batch was closed before this item was sent")
        if self._refusing is not None:
            raise self._refuse(item)

    async def _sent_down(self, item: Item, written: Awaitable[None]) -> None:
        """Await what the sending hook returned; if it fails, so does the item."""
        try:
            await written
        except BaseException as exc:
            self._hook_failed(item, "sending", exc)
            assert item.hook_error is not None
            raise item.hook_error from exc
        try:
            self._may_send(item)  # the batch may have stopped meanwhile
        except FashnError:
            # Written down as about to be sent, and not sent: say so, so that a journal
            # does not keep a row "submitting" (uncertain) that nothing was sent for.
            with contextlib.suppress(Exception):
                self.events.not_created(item.index)
            raise
        self._unsent.discard(item)

    def _submitted(self, item: Item, prediction_id: str) -> None:
        item.prediction_id = prediction_id
        self._unsent.discard(item)  # it exists: a stop no longer refuses it
        self.progress.submitted += 1
        self._hook(item, "submitted", item.index, prediction_id)
        self._notify(item)

    def _not_created(self, item: Item) -> None:
        if not self._hook(item, "not_created", item.index):
            assert item.hook_error is not None
            raise item.hook_error  # nothing exists: fail the item rather than re-send

    def _notify(self, item: Item) -> bool:
        self.progress.running = self.engine.in_flight.running(self)  # its one owner's count
        return self._hook(item, "progress", self.progress)

    def _may_cancel(self, item: Item, prediction_id: str | None) -> bool:
        """Whether ``item``'s prediction may be sent a cancel now (the ``may_cancel``
        hook); one that raises fails the item, stops the batch, and keeps it running."""
        try:
            return prediction_id is None or bool(self.events.may_cancel(item.index, prediction_id))
        except BaseException as exc:
            self._hook_failed(item, "may_cancel", exc)
            return False

    def _hook(self, item: Item, name: str, *args: Any) -> bool:
        """Call one hook; if it raises, fail the item, stop its work and the batch."""
        try:
            getattr(self.events, name)(*args)
        except BaseException as exc:
            self._hook_failed(item, name, exc)
            return False
        return True

    def _hook_failed(self, item: Item, name: str, exc: BaseException) -> None:
        """A hook raised: fail the item, stop its work and the batch (a BaseException
        that is not an Exception cancels the run and reaches the consumer as is)."""
        if not is_failure(exc):
            if fatal_in(exc) is None:  # our own cancellation, seen through the hook
                raise exc
            self._fatal(exc)
        if item.hook_error is None:
            what = f"the {name} hook raised {type(exc).__name__}: {exc}"
            item.hook_error = EventHookError(
                f"batch item {item.index}: {what}", prediction_id=item.prediction_id
            )
            item.hook_error.__cause__ = exc
            item.scope.cancel()
            stop = EventHookError(f"the batch stopped at item {item.index}: {what}")
            stop.__cause__ = exc
            self._unsent.discard(item)  # it fails with its hook's error, not as unsent
            self._stop(stop)


def is_failure(exc: BaseException) -> bool:
    """Whether ``exc``, raised by user code the batch called (its input, a hook, an
    image's ``read()``), is that code's failure, to report as a value or an error: an
    ``Exception``, or a ``CancelledError`` it raised while nothing cancels the batch (it
    awaited a future someone else cancelled, say). Propagated, such a CancelledError
    would end the batch silently, as if it had finished, and break the client's group.
    """
    return isinstance(exc, Exception) or foreign_cancel(exc)


def fatal_in(exc: BaseException) -> BaseException | None:
    """The BaseException to hand the consumer in ``exc`` (unwrapped from a group), or
    None if ``exc`` is only a cancellation, which must propagate."""
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, BaseExceptionGroup):
        rest = exc.split(cancelled)[1]
        if rest is None:
            return None
        leaves = rest.exceptions
        return fatal_in(leaves[0]) if len(leaves) == 1 else rest
    return None if isinstance(exc, cancelled) else exc
