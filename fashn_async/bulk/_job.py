"""The bulk job: a catalog through ``client.batch``, every step written to the journal.

A run first reconciles the journal with the disk (rows caught mid-POST become
``uncertain``, done rows with missing files ``completed``), then feeds the batch:
``submitted`` and ``canceled`` rows as ``Prediction(id)`` items, polled and never re-sent
while their prediction may have finished, ``pending`` rows as requests. Outputs are
downloaded concurrently as results arrive.

Every kind of stop leaves the journal matching the server, row by row:

- :meth:`BulkJob.interrupt` (Ctrl-C): running predictions are canceled on the server
  and their rows recorded ``canceled`` (a re-run sends them again), or with
  ``leave_running`` left running for a later run to collect; a cancel goes only to a
  prediction whose cancel the journal holds (the others stay ``submitted``, running);
- a journal write that fails (a full disk): the job stops as if interrupted, sending
  nothing more; the downloads stop first, and only then is the journal's reserve freed
  for the stop's records; a POST's answer the journal refuses even then is kept in the
  reserve's head (:mod:`~fashn_async.bulk._answers`), taken back before anything is sent;
- out of credits: nothing more is sent; rows not sent stay ``pending``.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable

import anyio

from fashn_async._batch import Batch
from fashn_async._client import AsyncFashn
from fashn_async._events import CallbackEvents
from fashn_async._models import Prediction, Request
from fashn_async._redact import safe_repr
from fashn_async._results import BatchResult
from fashn_async.bulk._answers import record_created, record_not_created
from fashn_async.bulk._catalog import Catalog
from fashn_async.bulk._downloads import Downloads, Save
from fashn_async.bulk._journal import Journal
from fashn_async.bulk._outcome import (
    CANCELED_BY_STOP,
    NOT_FOUND,
    Display,
    JobOptions,
    JobSummary,
    Outcome,
    failure_outcome,
)
from fashn_async.bulk._reconcile import pace_restart, reconcile, settle, uncertain_note
from fashn_async.bulk._rows import JournalWriteError, RowRecord, State
from fashn_async.bulk._writes import JournalWrites
from fashn_async.errors import EventHookError, OutOfCreditsError

__all__ = ["BulkJob"]


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
        #: Rows whose cancel the journal holds: the only ones the batch may send one.
        self._cancel_recorded: set[int] = set()
        #: Submitted rows whose polling gave up: left running, out of the batch.
        self._gave_up: set[int] = set()
        #: Rows sent again in this run, their prediction found canceled (once per run).
        self._resent: set[int] = set()
        #: Submitted rows whose polling gave up on a 404 before (noted NOT_FOUND).
        self._not_found_before: set[int] = set()
        self._counts: Counter[str] = Counter()
        self._keys: dict[int, str] = {}
        self._scope: anyio.CancelScope | None = None
        self._batch: Batch | None = None  # the batch of the current round
        self._interrupted = False
        self._stopped: str | None = None
        self._writes = JournalWrites(self._stop_for_disk)
        self._downloads = Downloads(
            journal, self._writes, options, note=display.note, line=self._line, move=self._move
        )
        self._freed = False  # the reserve, for the records of a disk stop
        #: Whether the stop asked for its cancels (None: not yet): recorded, and sent.
        self._cancels: bool | None = None
        self._stopped_running = 0
        self._not_canceled = 0  # of those, the ones the journal did not record canceled

    @safe_repr
    def __repr__(self) -> str:
        return f"<BulkJob {self._options.out} {dict(self._counts)}>"

    def interrupt(self) -> None:
        """Stop the run (from a signal handler, say); :meth:`run` then returns. Running
        rows are marked canceled in the journal *before* they are canceled, so a re-run
        sends them again even if the process dies during the cancels."""
        if self._interrupted:
            return
        self._interrupted = True
        self._stop()

    @property
    def _problem(self) -> str | None:
        return self._writes.problem

    def _stop_for_disk(self) -> None:
        self._stopped = "disk"
        if not self._downloads.stop():  # else once they have stopped
            self._free_and_stop()

    def _free_and_stop(self) -> None:
        """After a disk problem, once nothing else of ours writes: free the reserve for
        the stop's records, and stop."""
        if self._problem is not None and not self._freed:
            self._freed = True
            self._journal.release_reserve()
            self._stop()

    def _stop(self) -> None:
        if not self._options.leave_running and self._cancels is None:
            self._cancels = False  # asked once (a refusal stops the job, which comes here)
            running = [
                row
                for row, state in self._states.items()
                if state == State.SUBMITTED and row not in self._gave_up
            ]
            # Those whose id waits to be written are not sent a cancel: none is recorded.
            now = [row for row in running if not self._writes.waits(row)]
            self._cancels = self._writes(self._journal.request_cancel, now, keep=False)
            self._cancel_recorded.update(now if self._cancels else ())
            if not self._cancels and self._batch:
                # The journal cannot record the cancels: send none, leave them running,
                # so that its "submitted" stays true (a re-run polls them by id).
                self._batch.leave_running()
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> JobSummary:
        """Reconcile, then send, poll and download until every row is final or stopped."""
        try:
            run = self._journal.begin_run()
        except JournalWriteError as error:
            self._writes.problem = error.message
            return JobSummary.of(self._journal, stopped="disk", problem=error.message)
        outcome = "crashed"
        try:
            # What earlier runs sent, read before reconciling (which resets rows).
            held = await pace_restart(self._client, self._journal, self._requests, self._options)
            if held is not None:
                self._display.note(held)
            self._reconcile()
            with anyio.CancelScope() as self._scope:
                if self._interrupted or self._problem:
                    self._scope.cancel()
                await self._rounds()
            outcome = "interrupted" if self._interrupted else (self._stopped or "finished")
        except JournalWriteError as error:  # outside the batch: reconcile, say
            self._writes.failed(error)
            outcome = "disk"
        finally:  # plain calls: nothing here can be canceled
            self._settle()
            self._writes(self._journal.end_run, run, outcome, rows=())
        counts = self._journal.counts()
        # The last progress line shows what the journal holds, as the summary does (a
        # stop may have failed to record what the display counted).
        self._display.update(counts, sum(counts.values()))
        return JobSummary.of(
            self._journal,
            interrupted=self._interrupted,
            stopped=self._stopped,
            problem=self._problem,
            stopped_running=self._stopped_running,
            left_running=self._options.leave_running,
            not_canceled=0 if self._options.leave_running else self._not_canceled,
        )

    # -- before: what the journal says, against the disk ------------------------------

    def _reconcile(self) -> None:
        for edit in self._journal.edits:
            self._display.note(edit)
        reconcile(self._journal, self._options, self._requests)
        records = self._journal.records()
        for record in records:
            self._move(record.row, record.state, notify=False)
        self._display.update(self._counts, len(records))
        if (note := uncertain_note(records)) is not None:
            self._display.note(note)

    # -- during ---------------------------------------------------------------------

    async def _rounds(self) -> None:
        """Work until nothing is left; a row found canceled is sent again once a run."""
        while True:
            records = self._journal.records()
            resend = self._requests.keys() - self._resent
            polls = [  # not those left to a re-run: polling gave up, or canceled twice
                r
                for r in records
                if (r.state == State.SUBMITTED and r.row not in self._gave_up)
                or (r.state == State.CANCELED and r.prediction_id and r.row in resend)
            ]
            sends = [r for r in records if r.state == State.PENDING and r.row in self._requests]
            saves = [r for r in records if r.state == State.COMPLETED]
            self._keys = {r.row: r.key for r in records}
            self._not_found_before = {
                r.row for r in records if r.state == State.SUBMITTED and r.error_name == NOT_FOUND
            }
            if not (polls or sends or saves):
                return
            if not await self._round(polls, sends, saves) or self._stopped:
                return

    async def _round(
        self, polls: list[RowRecord], sends: list[RowRecord], saves: list[RowRecord]
    ) -> bool:
        """One batch over ``polls`` and ``sends``; True when rows became pending again."""
        order: list[int] = []
        again = False

        async def items() -> AsyncIterator[Prediction | Request]:
            for record in polls:
                order.append(record.row)
                yield Prediction(str(record.prediction_id))
            for record in sends:
                request = self._requests[record.row]
                order.append(record.row)
                yield request

        def sending(index: int) -> Awaitable[None]:
            # Awaited before the POST goes out: the journal must know first.
            return self._sending(order[index])

        def not_created(index: int) -> None:
            # A 429, a 5xx or a refused connection: nothing exists, so a crash before the
            # re-send must not leave the row "uncertain".
            self._not_created(order[index])

        def submitted(index: int, prediction_id: str) -> None:
            row = order[index]
            if self._states[row] != State.SUBMITTED:
                # After a stop that asked for its cancels, the engine cancels it next.
                canceling, say = bool(self._cancels), self._display.note
                if record_created(self._journal, self._writes, row, prediction_id, canceling, say):
                    self._cancel_recorded.add(row)
                self._move(row, State.SUBMITTED)

        send, receive = anyio.create_memory_object_stream[Save](math.inf)
        async with anyio.create_task_group() as tg:
            self._downloads.start(tg, receive, then=self._free_and_stop)
            async with send:
                for record in saves:
                    assert record.prediction_id is not None
                    pid, outputs = record.prediction_id, tuple(record.outputs)
                    await send.send(Save(record.row, record.key, pid, outputs))
                if not (polls or sends):
                    return False
                events = CallbackEvents(
                    on_sending=sending,
                    on_submitted=submitted,
                    on_not_created=not_created,
                    may_cancel=lambda index, _: order[index] in self._cancel_recorded,
                )
                leave = self._options.leave_running
                batch = self._client.batch(items(), events=events, cancel_on_exit=not leave)
                self._batch = batch
                try:
                    async with batch:
                        async for result in batch:
                            row = order[result.index]
                            if result.ok:
                                save = self._completed(row, result)
                                if save is not None and self._problem is None:
                                    await send.send(save)  # (else the downloads stop)
                            else:
                                again |= self._failed(row, result)
                except OutOfCreditsError as error:
                    self._stopped = "out of credits"
                    self._display.note(
                        f"the job stopped submitting: {error.message}. Rows not sent stay "
                        "pending; add credits and run the same command again to resume."
                    )
                except EventHookError as error:
                    if self._problem is None or not isinstance(error.__cause__, JournalWriteError):
                        raise
                    # A `submitting` write refused: the batch stopped sending. Its
                    # predictions are left (or canceled) only once the downloads have
                    # stopped and the reserve is freed: then the stop cancels this wait.
                    await anyio.sleep_forever()
        return again

    async def _sending(self, row: int) -> None:
        """Write ``submitting`` in a worker thread (the fsync off the event loop, while
        the submit grant waits); raising keeps the POST from going out."""
        if self._problem is not None:  # a disk stop under way: nothing more goes out
            raise JournalWriteError(self._problem)
        try:
            await self._journal.sending_off_loop(row)
        except JournalWriteError as error:
            self._writes.failed(error)
            raise
        except anyio.get_cancelled_exc_class():
            self._not_created(row)  # written, but the POST never goes out
            raise
        self._move(row, State.SUBMITTING)

    def _not_created(self, row: int, note: str | None = None) -> None:
        """The row's last POST created nothing, or never went out: ``pending`` again."""
        record_not_created(self._journal, self._writes, row, note, say=self._display.note)
        self._move(row, State.PENDING)

    def _completed(self, row: int, result: BatchResult) -> Save | None:
        assert result.prediction_id is not None
        self._move(row, State.COMPLETED)
        if not self._writes(self._journal.completed, row, result.prediction_id, result.output):
            return None
        return Save(row, self._key(row), result.prediction_id, result.output, result)

    def _failed(self, row: int, result: BatchResult) -> bool:
        """Record a result that is not a success (see :func:`failure_outcome`); True
        when the row goes round again in this run."""
        error = result.error
        assert error is not None
        name, message = error.name or type(error).__name__, error.message
        stopping = self._interrupted or self._problem is not None
        outcome = failure_outcome(
            error,
            result.prediction_id,
            stopping=stopping,
            not_found_before=row in self._not_found_before,
        )
        if outcome is Outcome.NEVER_SENT:
            self._move(row, State.PENDING)
        elif outcome is Outcome.CANCELED_BY_STOP:
            self._writes(self._journal.canceled, [row], CANCELED_BY_STOP)
            self._move(row, State.CANCELED)
        elif outcome is Outcome.COLLECT_LATER:  # stays submitted: a re-run polls it
            self._gave_up.add(row)
            noted = NOT_FOUND if error.status_code == 404 else name  # a second 404: uncertain
            self._writes(self._journal.note_error, row, noted, message)
            self._display.note(
                f"line {self._line(row)}: polling prediction {result.prediction_id} gave up "
                "(it was not canceled); run the same command again to collect it"
            )
        elif outcome is Outcome.SEND_AGAIN and row in self._resent:
            note = "its prediction was canceled again; a re-run sends it once more"
            self._writes(self._journal.canceled, [row], note)
            self._move(row, State.CANCELED)
        elif outcome is Outcome.NOT_CREATED:
            self._not_created(row, f"not sent: {name}: {message}")
        elif outcome is Outcome.SEND_AGAIN:
            self._resent.add(row)
            self._writes(self._journal.reset, [row], "its prediction was canceled; sent again")
            self._move(row, State.PENDING)
            return True
        else:
            state = outcome.value
            self._writes(self._journal.ended, row, state, name, message, result.prediction_id)
            self._move(row, state)
            self._display.note(f"line {self._line(row)}: {state}: {name}: {message}")
        return False

    # -- after ----------------------------------------------------------------------

    def _settle(self) -> None:
        """Write down what a stop left behind (runs after any stop, plain calls only)."""
        self._free_and_stop()  # (done already, unless no round ran)
        self._writes.retry()
        with contextlib.suppress(JournalWriteError):  # else the next run takes them
            for row, prediction_id in self._journal.take_rescued():  # if it takes them now
                self._move(row, State.SUBMITTED if prediction_id else State.PENDING)
        try:
            self._settle_rows()
        except JournalWriteError as error:
            self._writes.problem = self._writes.problem or error.message

    def _settle_rows(self) -> None:
        stopped = self._interrupted or self._problem is not None
        moved, running = settle(
            self._journal, stopped=stopped, options=self._options, gave_up=self._gave_up
        )
        for row, state in moved:
            self._move(row, state)
        if stopped:  # the summary says what became of them
            self._stopped_running = running
            self._not_canceled = running - sum(state == State.CANCELED for _, state in moved)

    def _key(self, row: int) -> str:
        return self._keys.get(row) or f"row{row:05d}"

    def _line(self, row: int) -> int:
        return getattr(self._journal.catalog.get(row), "line", 0)

    def _move(self, row: int, state: str, *, notify: bool = True) -> None:
        old = self._states.get(row)
        if old is not None:
            self._counts[old] -= 1
        self._states[row] = state
        self._counts[state] += 1
        if notify:
            self._display.update(self._counts, len(self._states))
