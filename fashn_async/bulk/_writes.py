"""Journal writes a failing disk may refuse, for a running job.

The first refusal (a full, read-only or failing disk) stops the job as if interrupted,
after freeing the journal's reserve so that the stop can still be recorded; each
refused write is kept and tried again once the job has stopped (:meth:`retry`). What
the journal still cannot take, the next run reconciles.
"""

from __future__ import annotations

from collections.abc import Callable

from fashn_async._redact import safe_repr
from fashn_async.bulk._journal import Journal
from fashn_async.bulk._rows import JournalWriteError

__all__ = ["JournalWrites"]


class JournalWrites:
    """Writes to ``journal`` that stop the job (``stop``) on the first disk failure.

    Attributes:
        problem: The disk problem that stopped the job, in a sentence (None: none).
    """

    def __init__(self, journal: Journal, stop: Callable[[], None]) -> None:
        self.problem: str | None = None
        self._journal = journal
        self._stop = stop
        self._deferred: list[Callable[[], None]] = []  # writes a failed disk refused

    @safe_repr
    def __repr__(self) -> str:
        return f"<JournalWrites problem={self.problem!r} deferred={len(self._deferred)}>"

    def __call__(self, write: Callable[..., None], *args: object) -> bool:
        """``write(*args)``; False when the disk refused it (then kept for :meth:`retry`)."""
        try:
            write(*args)
        except JournalWriteError as error:
            self._deferred.append(lambda: write(*args))
            self.failed(error)
            return False
        return True

    def failed(self, error: BaseException) -> None:
        """A write failed for lack of disk: stop the job (once), recording what we can."""
        if self.problem is not None:
            return
        self.problem = getattr(error, "message", None) or str(error)
        self._journal.release_reserve()  # room for the stop's own records
        self._stop()  # the summary names the problem, in one line

    def retry(self) -> None:
        """Try the refused writes again, in order, once the job has stopped (plain calls:
        nothing here can be canceled); stop at the first the disk still refuses."""
        for write in self._deferred:
            try:
                write()
            except JournalWriteError:
                break  # the next run reconciles what the journal could not take
        self._deferred.clear()
