"""What a batch tells you while it runs: one small interface for every hook, and its data.

As stamina keeps its retry instrumentation apart (``stamina/instrumentation``: the data
a hook gets, the hook interface, a few implementations), a batch reports every step of
every item to one :class:`BatchEvents` object, passed as ``client.batch(items,
events=...)``. A crash-safe journal, a progress display and metrics are each one small
subclass. The keyword hooks of ``batch()`` (``on_sending=...``) are shorthands that build
a :class:`CallbackEvents`.

Every hook is called synchronously on the event loop, in the task working on the item,
so it must be quick (an append, a counter; a write of a few bytes at most). A hook that
raises stops the batch: see :class:`BatchEvents`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import attrs

from fashn_async._redact import safe_repr
from fashn_async._validators import shorten
from fashn_async.errors import ConfigurationError

__all__ = ["BatchEvents", "BatchProgress", "CallbackEvents", "events_from"]


@attrs.define
class BatchProgress:
    """Live counts of a batch, for progress displays.

    A report, updated right before each call of the ``progress`` hook; the limits never
    read it. Every count is a snapshot of that moment, ``running`` included: a copy of
    what the client's one owner of in-flight state (``fashn_async._inflight.InFlight``)
    counted for this batch then, not a live view (between two hooks it is not refreshed).

    Attributes:
        read: Items pulled from the input so far.
        submitted: Predictions created on the server (or given as ``Prediction`` items).
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


class BatchEvents:
    """The hooks of a batch; subclass it and override the ones you need (each is a no-op).

    ``index`` is the item's position in the batch's input, as in ``BatchResult.index``.

    A hook that raises (an ``Exception``) stops the batch as running out of credits does:
    the item it was called for fails with :class:`~fashn_async.errors.EventHookError`
    (the hook's exception is its ``__cause__``), no further item is read, the items
    already running finish and are yielded, then the batch raises an ``EventHookError``.
    Whatever the failing item had started is undone: a POST not yet sent is not sent, a
    prediction already created is cancelled on the server; its submit grant is settled
    and its in-flight slot given back, as on any other failure. No further POST goes
    out: an item read but not yet sent fails with an ``EventHookError`` saying it was not
    sent.

    A hook raising a ``BaseException`` that is not an ``Exception``
    (``KeyboardInterrupt``, ``SystemExit``) cancels its batch's work and is re-raised as
    is by the batch's next ``anext()``; the client's other batches go on.
    """

    def sending(self, index: int) -> Awaitable[None] | None:
        """The item was admitted by the limits; its ``POST /v1/run`` goes out when this
        returns (and again after each :meth:`not_created`). From now on a prediction may
        exist: a journal writes this down first.

        It may return an awaitable, awaited before the POST goes out: a journal that
        writes (and fsyncs) in a worker thread keeps the event loop free. If it raises,
        the POST is not sent and the item's submit grant is given back."""
        return None

    def submitted(self, index: int, prediction_id: str) -> None:
        """The server created the item's prediction (also when the batch is being left
        and the prediction is about to be cancelled), or a ``Prediction`` item is about
        to be polled."""

    def not_created(self, index: int) -> None:
        """An answer proved that the last POST created nothing (a 429, a 5xx, a refused
        connection); the item is sent again after a wait, or fails."""

    def progress(self, progress: BatchProgress) -> None:
        """A count of the batch changed; ``progress`` is the batch's live object."""

    def may_cancel(self, index: int, prediction_id: str) -> bool:
        """Asked right before the batch sends the item's prediction a cancel (the batch
        left early or stopped, with ``cancel_on_exit``; or, whatever that says, a
        prediction whose POST was on the wire then, which would otherwise run unseen):
        False leaves it running. A journal says yes only once it has recorded the cancel,
        so that it never holds as running a prediction that was canceled. One that
        raises fails its item as any hook does, and leaves the prediction running.
        Default: True."""
        return True


class CallbackEvents(BatchEvents):
    """The keyword shorthands of ``AsyncFashn.batch`` as one :class:`BatchEvents`.

    Args:
        on_sending: Called as :meth:`BatchEvents.sending`.
        on_submitted: Called as :meth:`BatchEvents.submitted`.
        on_not_created: Called as :meth:`BatchEvents.not_created`.
        on_progress: Called as :meth:`BatchEvents.progress`.
        may_cancel: Called as :meth:`BatchEvents.may_cancel` (None: always True).
    """

    def __init__(
        self,
        *,
        on_sending: Callable[[int], object] | None = None,
        on_submitted: Callable[[int, str], object] | None = None,
        on_not_created: Callable[[int], object] | None = None,
        on_progress: Callable[[BatchProgress], object] | None = None,
        may_cancel: Callable[[int, str], bool] | None = None,
    ) -> None:
        self._on_sending = on_sending
        self._on_submitted = on_submitted
        self._on_not_created = on_not_created
        self._on_progress = on_progress
        self._may_cancel = may_cancel

    @safe_repr
    def __repr__(self) -> str:
        names = ("on_sending", "on_submitted", "on_not_created", "on_progress")
        given = [name for name in names if getattr(self, f"_{name}") is not None]
        return f"<CallbackEvents {' '.join(given) or 'none'}>"

    def sending(self, index: int) -> Awaitable[None] | None:
        """Call ``on_sending(index)``; an awaitable it returns is awaited before the POST."""
        if self._on_sending is None:
            return None
        written = self._on_sending(index)
        return written if inspect.isawaitable(written) else None

    def submitted(self, index: int, prediction_id: str) -> None:
        """Call ``on_submitted(index, prediction_id)``."""
        if self._on_submitted is not None:
            self._on_submitted(index, prediction_id)

    def not_created(self, index: int) -> None:
        """Call ``on_not_created(index)``."""
        if self._on_not_created is not None:
            self._on_not_created(index)

    def progress(self, progress: BatchProgress) -> None:
        """Call ``on_progress(progress)``."""
        if self._on_progress is not None:
            self._on_progress(progress)

    def may_cancel(self, index: int, prediction_id: str) -> bool:
        """``may_cancel(index, prediction_id)``, or True if none was given."""
        return self._may_cancel is None or bool(self._may_cancel(index, prediction_id))


def events_from(
    events: BatchEvents | None,
    *,
    on_sending: Callable[[int], object] | None = None,
    on_submitted: Callable[[int, str], object] | None = None,
    on_not_created: Callable[[int], object] | None = None,
    on_progress: Callable[[BatchProgress], object] | None = None,
) -> BatchEvents:
    """The one :class:`BatchEvents` of ``batch(events=..., on_...=...)``.

    Raises:
        ConfigurationError: ``events`` is not a BatchEvents, a shorthand is not callable,
            or both ``events`` and shorthands are given.
    """
    shorthands = {
        "on_progress": on_progress,
        "on_sending": on_sending,
        "on_submitted": on_submitted,
        "on_not_created": on_not_created,
    }
    for name, hook in shorthands.items():
        if hook is not None and not callable(hook):
            raise ConfigurationError(f"{name} must be callable or None, got {shorten(hook)}")
    given = [name for name, hook in shorthands.items() if hook is not None]
    if events is not None and given:
        raise ConfigurationError(
            f"pass events=... or the shorthand hooks ({', '.join(given)}), not both"
        )
    if events is None:
        return CallbackEvents(
            on_sending=on_sending,
            on_submitted=on_submitted,
            on_not_created=on_not_created,
            on_progress=on_progress,
        )
    if not isinstance(events, BatchEvents):
        raise ConfigurationError(
            f"events must be a BatchEvents (subclass it), got {type(events).__name__}"
        )
    return events
