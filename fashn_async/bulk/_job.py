"""The bulk job: a catalog through ``client.batch``, every step written to the journal.

A run first reconciles the journal with the disk (rows caught mid-POST become
``uncertain``, done rows with missing files ``completed``), then feeds the batch:
``submitted`` and ``canceled`` rows as ``Prediction(id)`` items, polled and never re-sent
while their prediction may have finished, ``pending`` rows as requests. Outputs are
downloaded concurrently as results arrive.

Every kind of stop leaves the journal matching the server, row by row:

- :meth:`BulkJob.interrupt` (Ctrl-C): running predictions are canceled on the server
  and their rows recorded ``canceled`` (a re-run sends them again), or with
  ``leave_running`` left running for a later run to collect;
- a journal write that fails (a full disk): the job stops as if interrupted, after
  freeing the journal's reserve so that the stop can still be recorded; the POST whose
  ``submitting`` write failed is never sent;
- out of credits: nothing more is sent; rows not sent stay ``pending``.
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream

from fashn_async._client import AsyncFashn
from fashn_async._models import Prediction, Request
from fashn_async._results import BatchResult, TryOnResult
from fashn_async._sources import in_worker
from fashn_async.bulk._catalog import Catalog
from fashn_async.bulk._journal import Journal, JournalWriteError, RowRecord, State
from fashn_async.bulk._pacing import Predecessors, carryover, seed_submit_window
from fashn_async.bulk._rows import disk_failure
from fashn_async.bulk._thumbs import thumbnail
from fashn_async.bulk._words import plural
from fashn_async.errors import (
    BadRequestError,
    FashnError,
    InvalidRequestError,
    OutOfCreditsError,
    PredictionCanceledError,
    SubmissionUncertainError,
)

__all__ = ["BulkJob", "Display", "JobOptions", "JobSummary"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_DISK, EXIT_INTERRUPTED = 0, 1, 2, 130
_RUNNING = frozenset({State.SUBMITTING, State.SUBMITTED})
#: An earlier run's rows that may be running on the server unknown to the journal.
_MAY_RUN = frozenset({State.SUBMITTING, State.UNCERTAIN})
#: Seconds a prediction runs at most: three times the upper end of the tryon class's
#: 5 to 11 s (the API docs, as ``Polling.prior``).
LONGEST_LATENCY = 33.0

UNCERTAIN_AFTER_CRASH = (
    "the job stopped while this row's POST was on the wire: the prediction may exist and "
    "be charged, so it is not re-sent (--resend-uncertain sends it again)"
)
UNCERTAIN_AFTER_STOP = (
    "the job was stopped while this row's POST was on the wire; a prediction it created "
    "was canceled (best effort). Not re-sent without --resend-uncertain"
)
CANCELED_BY_STOP = (
    "canceled on the server when the job was stopped; a re-run checks it and sends it "
    "again (one that had finished anyway is collected)"
)


class Display(Protocol):
    """Where a job reports progress: a live display, log lines, or nothing."""

    def update(self, counts: Mapping[str, int], total: int) -> None:
        """Row counts per state changed."""

    def note(self, text: str) -> None:
        """Something a person should read (a row failed, the job stops, ...)."""


@attrs.frozen(kw_only=True)
class JobOptions:
    """How a run treats the rows its journal already knows.

    Args:
        out: The output folder (journal, outputs, manifest, report).
        resend_uncertain: Send ``uncertain`` rows again (each may be charged twice).
        retry_failed: Send ``failed`` rows again (failed predictions are not charged).
        leave_running: On interrupt, leave running predictions running (a later run
            collects them) instead of canceling them on the server.
        downloads: Outputs downloaded at once.
        thumbnails: Make each output's report thumbnail as soon as it is downloaded.
        longest_latency: Seconds a prediction may run at most (the API's tryon class
            takes 5 to 11 s, ``Polling.prior``; three times that by default). A
            restarted job counts its predecessor's possibly-running predictions against
            the in-flight cap for this long after they were sent.
    """

    out: Path
    resend_uncertain: bool = False
    retry_failed: bool = False
    leave_running: bool = False
    downloads: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    thumbnails: bool = True
    longest_latency: float = attrs.field(default=LONGEST_LATENCY, validator=attrs.validators.gt(0))


@attrs.frozen(kw_only=True)
class JobSummary:
    """How a run ended: rows per state, and whether it was stopped early.

    Attributes:
        counts: Rows per state.
        interrupted: Stopped by :meth:`BulkJob.interrupt` (Ctrl-C).
        stopped: Why it stopped early otherwise (``out of credits``, ``disk``).
        problem: The disk problem that stopped it, in a sentence.
        stopped_running: Predictions running when it was stopped (canceled on the server,
            or with ``left_running`` left running).
        left_running: The stop left them running (``--leave-running``).
    """

    counts: Mapping[str, int]
    interrupted: bool = False
    stopped: str | None = None
    problem: str | None = None
    stopped_running: int = 0
    left_running: bool = False

    @property
    def total(self) -> int:
        """Rows in the catalog."""
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        """0: every row done; 1: some are not; 2: a disk problem stopped it; 130: stopped
        by Ctrl-C (a re-run resumes after either stop)."""
        if self.problem is not None:
            return EXIT_DISK
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if self.counts.get(State.DONE, 0) == self.total else EXIT_SOME_FAILED


@attrs.frozen
class _Save:
    row: int
    key: str
    prediction_id: str
    outputs: tuple[str, ...]
    result: BatchResult | None = None


class BulkJob:
    """One run of a bulk job; see the module docstring."""

    def __init__(
        self,
        client: AsyncFashn,
        catalog: Catalog,
        journal: Journal,
        options: JobOptions,
        display: Display,
    ) -> None:
        self._client = client
        self._catalog = catalog
        self._journal = journal
        self._options = options
        self._display = display
        self._requests: dict[int, Request] = {
            number: row.request
            for number, row in journal.catalog.items()
            if row.request is not None
        }
        self._states: dict[int, str] = {}
        self._counts: Counter[str] = Counter()
        self._predecessors: Predecessors | None = None
        self._admitted: set[int] = set()  # rows handed to the batch, not yet finished
        self._finished = anyio.Event()
        self._keys: dict[int, str] = {}
        self._scope: anyio.CancelScope | None = None
        self._interrupted = False
        self._stopped: str | None = None
        self._problem: str | None = None
        self._deferred: list[Callable[[], None]] = []  # writes a failed disk refused
        self._stopped_running = 0

    def __repr__(self) -> str:
        return f"<BulkJob {self._options.out} {dict(self._counts)}>"

    def interrupt(self) -> None:
        """Stop the run (from a signal handler, say); :meth:`run` then returns.

        Running rows are marked canceled in the journal *before* they are canceled, so
        a re-run sends them again even if the process dies during the cancels.
        """
        if self._interrupted:
            return
        self._interrupted = True
        self._stop()

    def _stop(self) -> None:
        if not self._options.leave_running:
            running = [row for row, state in self._states.items() if state == State.SUBMITTED]
            self._write(self._journal.request_cancel, running)
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> JobSummary:
        """Reconcile, then send, poll and download until every row is final or stopped."""
        try:
            run = self._journal.begin_run()
        except JournalWriteError as error:
            return self._disk_summary(error)
        outcome = "crashed"
        try:
            # What earlier runs sent, read before reconciling (a row sent again forgets).
            records = self._journal.records()
            seed_submit_window(
                self._client,
                carryover(
                    [
                        (r.sent_at, getattr(self._requests.get(r.row), "generations", 1))
                        for r in records
                        if r.sent_at is not None
                    ],
                    time.time(),
                ),
            )
            self._predecessors = Predecessors(
                self._client.limits.in_flight,
                [r.sent_at for r in records if r.state in _MAY_RUN and r.sent_at is not None],
                self._options.longest_latency,
            )
            self._reconcile()
            with anyio.CancelScope() as self._scope:
                if self._interrupted or self._problem:
                    self._scope.cancel()
                await self._rounds()
            outcome = "interrupted" if self._interrupted else (self._stopped or "finished")
        except JournalWriteError as error:  # outside the batch: reconcile, say
            self._disk_failed(error)
            outcome = "disk"
        finally:  # plain calls: nothing here can be canceled
            self._settle()
            self._write(self._journal.end_run, run, outcome)
        counts = self._journal.counts()
        # The last progress line shows what the journal holds, as the summary does (a
        # stop may have failed to record what the display counted).
        self._display.update(counts, sum(counts.values()))
        return JobSummary(
            counts=counts,
            interrupted=self._interrupted,
            stopped=self._stopped,
            problem=self._problem,
            stopped_running=self._stopped_running,
            left_running=self._options.leave_running,
        )

    def _disk_summary(self, error: JournalWriteError) -> JobSummary:
        self._problem = error.message
        return JobSummary(counts=self._journal.counts(), stopped="disk", problem=error.message)

    # -- writes that a failing disk may refuse ---------------------------------------

    def _write(self, write: Callable[..., None], *args: object) -> bool:
        """Write to the journal; on a disk failure, stop the job and retry at the end."""
        try:
            write(*args)
        except JournalWriteError as error:
            self._deferred.append(lambda: write(*args))
            self._disk_failed(error)
            return False
        return True

    def _disk_failed(self, error: BaseException) -> None:
        """A write failed for lack of disk: stop as if interrupted, recording what we can."""
        if self._problem is not None:
            return
        self._problem = getattr(error, "message", None) or str(error)
        self._stopped = "disk"
        self._journal.release_reserve()  # room for the stop's own records
        self._stop()  # the summary names the problem, in one line

    # -- before: what the journal says, against the disk ------------------------------

    def _reconcile(self) -> None:
        journal, out = self._journal, self._options.out
        for note in journal.edits:
            self._display.note(note)
        for record in journal.records():
            state, number = record.state, record.row
            if state == State.SUBMITTING:
                journal.ended(number, State.UNCERTAIN, "SubmissionUncertain", UNCERTAIN_AFTER_CRASH)
            elif (state == State.UNCERTAIN and self._options.resend_uncertain) or (
                state == State.FAILED and self._options.retry_failed
            ):
                if number in self._requests:
                    journal.reset([number], note=f"sent again ({state} before)")
            elif state == State.DONE and not all((out / name).is_file() for name in record.files):
                assert record.prediction_id is not None
                journal.completed(number, record.prediction_id, record.outputs)
        records = journal.records()
        for record in records:
            self._move(record.row, record.state, notify=False)
        self._display.update(self._counts, len(records))
        uncertain = [r for r in records if r.state == State.UNCERTAIN]
        if uncertain:
            listed = ", ".join(f"line {r.line}" for r in uncertain[:20])
            more = f" and {len(uncertain) - 20} more" if len(uncertain) > 20 else ""
            self._display.note(
                f"{plural(len(uncertain), 'uncertain row')}, not re-sent: their POST may "
                f"have landed without an answer ({listed}{more}). Re-run with "
                "--resend-uncertain to send them again; each may then be charged twice."
            )

    # -- during ---------------------------------------------------------------------

    async def _rounds(self) -> None:
        """Work until nothing is left; rows found canceled on the server go round twice."""
        while True:
            records = self._journal.records()
            polls = [
                r
                for r in records
                if r.state == State.SUBMITTED
                or (r.state == State.CANCELED and r.prediction_id and r.row in self._requests)
            ]
            sends = [r for r in records if r.state == State.PENDING and r.row in self._requests]
            saves = [r for r in records if r.state == State.COMPLETED]
            self._keys = {r.row: r.key for r in records}
            if not (polls or sends or saves):
                return
            if not await self._round(polls, sends, saves) or self._stopped:
                return

    async def _room(self) -> None:
        """Hold a new request back while an earlier run's possibly-running predictions
        fill the in-flight cap (its sends in the submit window are the limiter's own
        concern: seeded in :meth:`run`)."""
        while self._predecessors is not None:
            wait = self._predecessors.wait(len(self._admitted), anyio.current_time())
            if wait is None:
                return
            with anyio.move_on_after(wait):
                await self._finished.wait()

    async def _round(
        self, polls: list[RowRecord], sends: list[RowRecord], saves: list[RowRecord]
    ) -> bool:
        """One batch over ``polls`` and ``sends``; True when rows became pending again."""
        order: list[int] = []
        again = False

        async def items() -> AsyncIterator[Prediction | Request]:
            for record in polls:
                order.append(record.row)
                self._admitted.add(record.row)
                yield Prediction(str(record.prediction_id))
            for record in sends:
                request = self._requests[record.row]
                await self._room()
                order.append(record.row)
                self._admitted.add(record.row)
                yield request

        def sending(index: int) -> Awaitable[None]:
            # Awaited before the POST goes out: the journal must know first.
            return self._sending(order[index])

        def not_created(index: int) -> None:
            # A 429, a 5xx or a refused connection: nothing exists, so a crash before the
            # re-send must not leave the row "uncertain".
            self._write(self._journal.reset, [order[index]])
            self._move(order[index], State.PENDING)

        def submitted(index: int, prediction_id: str) -> None:
            if self._states[order[index]] != State.SUBMITTED:
                # An answer that arrives after a stop: the engine cancels it next.
                stopping = self._interrupted or self._problem is not None
                canceling = stopping and not self._options.leave_running
                write = functools.partial(self._journal.submitted, canceling=canceling)
                self._write(write, order[index], prediction_id)
                self._move(order[index], State.SUBMITTED)

        send, receive = anyio.create_memory_object_stream[_Save](math.inf)
        async with anyio.create_task_group() as tg:
            for _ in range(self._options.downloads):
                tg.start_soon(self._saver, receive.clone())
            receive.close()
            async with send:
                for record in saves:
                    assert record.prediction_id is not None
                    pid, outputs = record.prediction_id, tuple(record.outputs)
                    await send.send(_Save(record.row, record.key, pid, outputs))
                if not (polls or sends):
                    return False
                batch = self._client.batch(
                    items(),
                    on_sending=sending,
                    on_submitted=submitted,
                    on_not_created=not_created,
                    cancel_on_exit=not self._options.leave_running,
                )
                try:
                    async with batch:
                        async for result in batch:
                            row = order[result.index]
                            self._left_batch(row)
                            if result.ok:
                                save = self._completed(row, result)
                                if save is not None:
                                    await send.send(save)
                            else:
                                again |= self._failed(row, result)
                except OutOfCreditsError as error:
                    self._stopped = "out of credits"
                    self._display.note(
                        f"the job stopped submitting: {error.message}. Rows not sent stay "
                        "pending; add credits and run the same command again to resume."
                    )
        return again

    def _left_batch(self, row: int) -> None:
        """The row's prediction is over (or was never made): its in-flight slot is free."""
        self._admitted.discard(row)
        self._finished.set()
        self._finished = anyio.Event()

    async def _sending(self, row: int) -> None:
        """Write ``submitting`` in a worker thread (the fsync off the event loop, while
        the submit grant waits); raising keeps the POST from going out."""
        try:
            await self._journal.sending_off_loop(row)
        except JournalWriteError as error:
            self._disk_failed(error)
            raise
        except anyio.get_cancelled_exc_class():
            self._write(self._journal.reset, [row])  # written, but the POST never goes out
            raise
        self._move(row, State.SUBMITTING)

    def _completed(self, row: int, result: BatchResult) -> _Save | None:
        assert result.prediction_id is not None
        self._move(row, State.COMPLETED)
        if not self._write(self._journal.completed, row, result.prediction_id, result.output):
            return None
        return _Save(row, self._key(row), result.prediction_id, result.output, result)

    def _failed(self, row: int, result: BatchResult) -> bool:
        error = result.error
        assert error is not None
        name, message = error.name or type(error).__name__, error.message
        line = self._line(row)
        if isinstance(error, JournalWriteError):  # its POST was never sent
            self._move(row, State.PENDING)
            return False
        if isinstance(error, PredictionCanceledError):
            if self._interrupted or self._problem is not None:
                self._write(self._journal.canceled, [row], CANCELED_BY_STOP)
                self._move(row, State.CANCELED)
                return False
            # Canceled by an earlier stop (or by hand): not charged; send it again.
            self._write(self._journal.reset, [row], "its prediction was canceled; sent again")
            self._move(row, State.PENDING)
            return True
        if isinstance(error, SubmissionUncertainError):
            state = State.UNCERTAIN
        elif result.prediction_id is None and isinstance(error, InvalidRequestError):
            state = State.INVALID
        elif result.prediction_id is None and not isinstance(error, BadRequestError):
            # Refused before any prediction existed (out of credits, 5xx, 401...):
            # nothing runs, nothing is charged; a later run sends it.
            self._write(self._journal.reset, [row], f"not sent: {name}: {message}")
            self._move(row, State.PENDING)
            return False
        else:
            state = State.FAILED
        self._write(self._journal.ended, row, state, name, message, result.prediction_id)
        self._move(row, state)
        self._display.note(f"line {line}: {state}: {name}: {message}")
        return False

    async def _saver(self, receive: MemoryObjectReceiveStream[_Save]) -> None:
        out = self._options.out
        async with receive:
            async for save in receive:
                try:
                    if save.result is not None:
                        paths = await save.result.save(out, stem=save.key)
                    else:
                        result = TryOnResult(id=save.prediction_id, output=save.outputs)
                        paths = await result.save(out, stem=save.key)
                except (FashnError, OSError) as error:
                    problem = disk_failure(error)
                    if problem is not None:
                        self._disk_failed(JournalWriteError(f"cannot write to {out}: {problem}"))
                        return
                    text = getattr(error, "message", None) or str(error)
                    name = getattr(error, "name", None) or type(error).__name__
                    self._write(self._journal.note_error, save.row, name, text)
                    self._display.note(
                        f"line {self._line(save.row)}: download failed, a re-run tries "
                        f"again: {text}"
                    )
                    continue
                if not self._write(self._journal.saved, save.row, [p.name for p in paths]):
                    return
                self._move(save.row, State.DONE)
                if self._options.thumbnails:  # for the report, while there is time
                    for path in paths:
                        try:
                            await in_worker(thumbnail, path, out)
                        except OSError:  # a preview is not worth stopping for
                            break

    # -- after ----------------------------------------------------------------------

    def _settle(self) -> None:
        """Write down what a stop left behind (runs after any stop, plain calls only)."""
        for write in self._deferred:
            try:
                write()
            except JournalWriteError:
                break  # the next run reconciles what the journal could not take
        self._deferred.clear()
        try:
            self._settle_rows()
        except JournalWriteError as error:
            self._problem = self._problem or error.message

    def _settle_rows(self) -> None:
        records = self._journal.records()
        stopped = self._interrupted or self._problem is not None
        running = [r.row for r in records if r.state == State.SUBMITTED]
        if stopped and running and not self._options.leave_running:
            # Canceled on the server as the batch left: recorded, a re-run sends them again.
            self._journal.canceled(running, CANCELED_BY_STOP)
            for row in running:
                self._move(row, State.CANCELED)
        for record in records:
            if record.state == State.SUBMITTING:
                self._journal.ended(
                    record.row, State.UNCERTAIN, "SubmissionUncertain", UNCERTAIN_AFTER_STOP
                )
                self._move(record.row, State.UNCERTAIN)
        if stopped:
            self._stopped_running = len(running)  # the summary says what became of them

    def _key(self, row: int) -> str:
        return self._keys.get(row) or f"row{row:05d}"

    def _line(self, row: int) -> int:
        current = self._journal.catalog.get(row)
        return current.line if current is not None else 0

    def _move(self, row: int, state: str, *, notify: bool = True) -> None:
        old = self._states.get(row)
        if old is not None:
            self._counts[old] -= 1
        self._states[row] = state
        self._counts[state] += 1
        if notify:
            self._display.update(self._counts, len(self._states))
