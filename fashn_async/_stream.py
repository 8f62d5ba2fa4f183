"""A batch's results in the order they finish: taken without waiting, so none is lost.

The last stage of the data path before the caller: workers put each item's
:class:`~fashn_async._results.BatchResult`, the :class:`~fashn_async._batch.Batch`
handle takes them.
"""

from __future__ import annotations

import logging
from collections import deque

import anyio

from fashn_async._redact import safe_repr
from fashn_async._results import BatchResult
from fashn_async.errors import SubmissionUncertainError

__all__ = ["ResultStream"]

logger = logging.getLogger("fashn_async")


class ResultStream:
    """A run's results in the order they finished.

    Taking one never waits (waiting is apart from taking), so a consumer cancelled at
    any point, even in the loop turn a result arrived, loses none.
    """

    def __init__(self) -> None:
        self._items: deque[BatchResult] = deque()
        self._changed = anyio.Event()
        #: No more results will come (every worker has ended).
        self.ended = False
        #: The consumer left: results are dropped.
        self.dropped = False

    @safe_repr
    def __repr__(self) -> str:
        state = "dropped" if self.dropped else "ended" if self.ended else "open"
        return f"<ResultStream {state} kept={len(self._items)}>"

    def put(self, result: BatchResult) -> None:
        """Add a finished item's result (dropped if the consumer left)."""
        if self.dropped:
            _unheard(result)
        else:
            self._items.append(result)
            self._wake()

    def end(self) -> None:
        """No more results will come."""
        self.ended = True
        self._wake()

    def drop(self) -> None:
        """The consumer left: drop what is kept and what comes."""
        self.dropped = True
        for result in self._items:
            _unheard(result)
        self._items.clear()
        self._wake()

    def take(self) -> BatchResult | None:
        """The next result if one is kept, else None; never waits."""
        return self._items.popleft() if self._items else None

    async def changed(self) -> None:
        """Wait until a result arrives or the stream ends (returns at once if it has)."""
        if not (self._items or self.ended or self.dropped):
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


def _unheard(result: BatchResult) -> None:
    """A result dropped because the consumer left: if its POST may have created a
    prediction no one can cancel (``SubmissionUncertainError``), a warning on the
    ``fashn_async`` logger says so, as nothing else will."""
    if isinstance(result.error, SubmissionUncertainError):
        logger.warning(
            "batch item %d was dropped with the batch, and %s", result.index, result.error
        )
