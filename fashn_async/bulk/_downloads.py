"""A bulk round's downloads: completed rows' outputs saved as results arrive.

Several savers take the rows from one stream, save each row's outputs whole (or not at
all) and record the row ``done``, then make its report thumbnails. A download that
meets a full or failing disk stops the job (:meth:`JournalWrites.failed`); one that
fails otherwise is noted on the row, which stays ``completed`` (a re-run downloads it).

The downloads stop on their own (:meth:`Downloads.stop`) before the rest of a job that
a disk problem stops: the reserve kept for the stop's records is freed only once
nothing of theirs writes, every thread of theirs done and their temporary files gone.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from fashn_async._redact import safe_repr
from fashn_async._results import BatchResult, TryOnResult
from fashn_async._shield import to_the_end
from fashn_async._sources import in_worker
from fashn_async.bulk._journal import Journal
from fashn_async.bulk._outcome import JobOptions
from fashn_async.bulk._rows import JournalWriteError, State, disk_failure
from fashn_async.bulk._thumbs import thumbnail
from fashn_async.bulk._writes import JournalWrites
from fashn_async.errors import FashnError

__all__ = ["Downloads", "Save"]


@attrs.frozen
class Save:
    """A completed row to download: its outputs, and its result when this run has it."""

    row: int
    key: str
    prediction_id: str
    outputs: tuple[str, ...]
    result: BatchResult | None = None


class Downloads:
    """The downloads of one round (see the module docstring).

    Args:
        note: Shows a line to the person running the job.
        line: The catalog line of a journal row.
        move: Moves a row to a state (``done``, once its files are on disk and recorded).
    """

    def __init__(
        self,
        journal: Journal,
        writes: JournalWrites,
        options: JobOptions,
        *,
        note: Callable[[str], None],
        line: Callable[[int], int],
        move: Callable[[int, str], None],
    ) -> None:
        self._journal = journal
        self._writes = writes
        self._options = options
        self._note = note
        self._line = line
        self._move = move
        self._scope: anyio.CancelScope | None = None  # while they run

    @safe_repr
    def __repr__(self) -> str:
        return f"<Downloads {'running' if self._scope is not None else 'idle'}>"

    def start(
        self,
        tg: TaskGroup,
        receive: MemoryObjectReceiveStream[Save],
        then: Callable[[], None],
    ) -> None:
        """Save what ``receive`` brings until it ends or :meth:`stop`; then call ``then``
        (a plain call: nothing of theirs writes any more)."""
        self._scope = anyio.CancelScope()
        tg.start_soon(self._run, self._scope, receive, then)

    def stop(self) -> bool:
        """Stop the downloads (each waits for its thread); False when none run."""
        if self._scope is None:
            return False
        self._scope.cancel()
        return True

    async def _run(
        self,
        scope: anyio.CancelScope,
        receive: MemoryObjectReceiveStream[Save],
        then: Callable[[], None],
    ) -> None:
        try:
            with scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(self._options.downloads):
                        tg.start_soon(self._saver, receive.clone())
                    receive.close()
        finally:  # also when the whole job is canceled (a Ctrl-C)
            self._scope = None
            then()

    async def _saver(self, receive: MemoryObjectReceiveStream[Save]) -> None:
        out = self._options.out
        async with receive:
            async for save in receive:
                if self._writes.problem is not None:  # the freed reserve is the journal's
                    return  # (the row stays completed: the next run downloads it)
                try:
                    if save.result is not None:
                        paths = await save.result.save(out, stem=save.key)
                    else:
                        result = TryOnResult(id=save.prediction_id, output=save.outputs)
                        paths = await result.save(out, stem=save.key)
                except (FashnError, OSError) as error:
                    problem = disk_failure(error)
                    if problem is not None:
                        self._writes.failed(JournalWriteError(f"cannot write to {out}: {problem}"))
                        return
                    text = getattr(error, "message", None) or str(error)
                    name = getattr(error, "name", None) or type(error).__name__
                    self._writes(self._journal.note_error, save.row, name, text)
                    line = self._line(save.row)
                    self._note(f"line {line}: download failed, re-run to retry: {text}")
                    continue
                if not self._writes(self._journal.saved, save.row, [p.name for p in paths]):
                    return
                self._move(save.row, State.DONE)
                if self._options.thumbnails and self._writes.problem is None:
                    for path in paths:  # for the report, while there is time
                        try:
                            await to_the_end(in_worker, thumbnail, path, out)
                        except OSError:  # a preview is not worth stopping for
                            break
