"""Journal writes a failing disk may refuse, for a running job.

The first refusal (a full, read-only or failing disk) stops the job as if interrupted
(the job frees the journal's reserve once nothing else of its own writes, so that the
stop can still be recorded). Each refused write is kept and tried again once the job
has stopped (:meth:`JournalWrites.retry`), in order, row by row: a write is never
applied after an earlier one to the same row that the disk refused (the row's record
would skip a step, or take an older state back), and never before it. What the journal
still cannot take, the next run reconciles. A write whose moment passes with its refusal
(the cancels a stop is about to send, which it then does not send) is not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from fashn_async._redact import safe_repr
from fashn_async.bulk._rows import JournalWriteError

__all__ = ["JournalWrites"]


class JournalWrites:
    """Writes to the journal that stop the job (``stop``) on the first disk failure.

    Each write changes the row (or rows) its first argument names, as the journal's
    writes do; a write that changes none says so (``rows=()``).

    Attributes:
        problem: The disk problem that stopped the job, in a sentence (None: none).
    """

    def __init__(self, stop: Callable[[], None]) -> None:
        self.problem: str | None = None
        self._stop = stop
        #: Writes not made yet, in order, with the rows each changes.
        self._deferred: list[tuple[frozenset[int], Callable[[], None]]] = []
        self._held: set[int] = set()  # rows with a write in _deferred

    @safe_repr
    def __repr__(self) -> str:
        return f"<JournalWrites problem={self.problem!r} deferred={len(self._deferred)}>"

    def __call__(
        self,
        write: Callable[..., None],
        *args: object,
        rows: Iterable[int] | None = None,
        keep: bool = True,
    ) -> bool:
        """``write(*args)``; False when it is not made now: the disk refused it, or an
        earlier write to one of its rows waits (then it is kept for :meth:`retry`, unless
        ``keep`` is False: then it is dropped)."""
        changed = frozenset(_rows_of(args[0]) if rows is None else rows)
        if changed & self._held:
            if keep:
                self._defer(changed, write, args)
            return False
        try:
            write(*args)
        except JournalWriteError as error:
            if keep:
                self._defer(changed, write, args)
            self.failed(error)
            return False
        return True

    def waits(self, row: int) -> bool:
        """Whether a write to ``row`` is kept for :meth:`retry` (later ones wait for it)."""
        return row in self._held

    def failed(self, error: BaseException) -> None:
        """A write failed for lack of disk: stop the job (once)."""
        if self.problem is not None:
            return
        self.problem = getattr(error, "message", None) or str(error)
        self._stop()  # the summary names the problem, in one line

    def retry(self) -> None:
        """Try the kept writes again, in order, once the job has stopped (plain calls:
        nothing here can be canceled). One the disk still refuses is dropped with every
        later write to its rows; the others are made."""
        refused: set[int] = set()
        for rows, write in self._deferred:
            if rows & refused:
                refused |= rows  # its rows' later writes wait for it too
                continue
            try:
                write()
            except JournalWriteError:
                refused |= rows  # the next run reconciles what the journal could not take
        self._deferred.clear()
        self._held.clear()

    def _defer(
        self, rows: frozenset[int], write: Callable[..., None], args: tuple[object, ...]
    ) -> None:
        self._deferred.append((rows, lambda: write(*args)))
        self._held |= rows


def _rows_of(first: object) -> Collection[int]:
    """The rows a journal write changes, from its first argument: a row, or rows."""
    if isinstance(first, int):
        return (first,)
    assert isinstance(first, Collection)  # read twice: here, and by the write
    return [row for row in first if isinstance(row, int)]
