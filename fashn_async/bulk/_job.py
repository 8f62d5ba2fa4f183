"""The bulk job: a catalog through ``client.batch``, every step written to the journal.

A run first reconciles the journal with the catalog (rows caught mid-POST become
``uncertain``, fixed bad rows ``pending``, done rows with missing files ``completed``),
then feeds the batch: ``submitted`` rows as ``Prediction(id)`` items, polled and never
re-sent, ``pending`` rows as requests. Outputs are downloaded concurrently as results
arrive. :meth:`BulkJob.interrupt` (Ctrl-C) stops it: running predictions are cancelled
on the server, or with ``leave_running`` left running for a later run to collect.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Protocol

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream

from fashn_async._client import AsyncFashn
from fashn_async._models import Prediction, Request
from fashn_async._results import BatchResult, TryOnResult
from fashn_async.bulk._catalog import Catalog
from fashn_async.bulk._journal import Journal, RowRecord, State
from fashn_async.bulk._pacing import Carryover
from fashn_async.bulk._thumbs import thumbnail
from fashn_async.errors import (
    BadRequestError,
    DownloadError,
    InvalidRequestError,
    OutOfCreditsError,
    PredictionCanceledError,
    SubmissionUncertainError,
)

__all__ = ["BulkJob", "Display", "JobOptions", "JobSummary"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 130

UNCERTAIN_AFTER_CRASH = (
    "the job stopped while this row's POST was on the wire: the prediction may exist and "
    "be charged, so it is not re-sent (--resend-uncertain sends it again)"
)
UNCERTAIN_AFTER_STOP = (
    "the job was stopped while this row's POST was on the wire; a prediction it created "
    "was cancelled (best effort). Not re-sent without --resend-uncertain"
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
            collects them) instead of cancelling them on the server.
        downloads: Outputs downloaded at once.
        thumbnails: Make each output's report thumbnail as soon as it is downloaded.
    """

    out: Path
    resend_uncertain: bool = False
    retry_failed: bool = False
    leave_running: bool = False
    downloads: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    thumbnails: bool = True


@attrs.frozen(kw_only=True)
class JobSummary:
    """How a run ended: rows per state, and whether it was stopped early."""

    counts: Mapping[str, int]
    interrupted: bool = False
    stopped: str | None = None

    @property
    def total(self) -> int:
        """Rows in the catalog."""
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        """0: every row done; 1: some are not; 130: stopped by Ctrl-C (re-run resumes)."""
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
            row.row: row.request for row in catalog.rows if row.request is not None
        }
        self._states: dict[int, str] = {}
        self._counts: Counter[str] = Counter()
        self._carryover: Carryover | None = None
        self._scope: anyio.CancelScope | None = None
        self._interrupted = False
        self._stopped: str | None = None

    def __repr__(self) -> str:
        return f"<BulkJob {self._options.out} {dict(self._counts)}>"

    def interrupt(self) -> None:
        """Stop the run (from a signal handler, say); :meth:`run` then returns.

        Running rows are marked cancelled in the journal *before* they are cancelled, so
        a re-run sends them again even if the process dies during the cancels.
        """
        if self._interrupted:
            return
        self._interrupted = True
        if not self._options.leave_running:
            running = [row for row, state in self._states.items() if state == State.SUBMITTED]
            self._journal.request_cancel(running)
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> JobSummary:
        """Reconcile, then send, poll and download until every row is final or stopped."""
        run = self._journal.begin_run()
        outcome = "crashed"
        try:
            self._reconcile()
            self._carryover = Carryover(
                self._client.limits,
                [
                    (r.sent_at, getattr(self._requests.get(r.row), "generations", 1))
                    for r in self._journal.records()
                    if r.sent_at is not None
                ],
            )
            with anyio.CancelScope() as self._scope:
                if self._interrupted:
                    self._scope.cancel()
                await self._rounds()
            outcome = "interrupted" if self._interrupted else (self._stopped or "finished")
        finally:  # plain calls: nothing here can be cancelled
            self._settle()
            self._journal.end_run(run, outcome)
        return JobSummary(
            counts=self._journal.counts(), interrupted=self._interrupted, stopped=self._stopped
        )

    # -- before: what the journal says, against the catalog and the disk ------------

    def _reconcile(self) -> None:
        journal, out = self._journal, self._options.out
        rows = {row.row: row for row in self._catalog.rows}
        for record in journal.records():
            state, number = record.state, record.row
            current = rows[number]
            if state == State.SUBMITTING:
                journal.ended(number, State.UNCERTAIN, "SubmissionUncertain", UNCERTAIN_AFTER_CRASH)
            elif state == State.INVALID and current.ok:
                journal.reset([number], note=f"fixed since: line {record.line} is valid now")
            elif state == State.PENDING and not current.ok:
                journal.ended(
                    number, State.INVALID, "InvalidRow", f"line {current.line}: {current.error}"
                )
            elif (state == State.UNCERTAIN and self._options.resend_uncertain) or (
                state == State.FAILED and self._options.retry_failed
            ):
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
            listed = ", ".join(f"{r.row} (line {r.line})" for r in uncertain[:20])
            more = f" and {len(uncertain) - 20} more" if len(uncertain) > 20 else ""
            self._display.note(
                f"{len(uncertain)} uncertain row(s), not re-sent: their POST may have landed "
                f"without an answer (rows {listed}{more}). Re-run with --resend-uncertain to "
                "send them again; each may then be charged twice."
            )

    # -- during ---------------------------------------------------------------------

    async def _rounds(self) -> None:
        """Work until nothing is left; rows cancelled by an earlier stop go round twice."""
        while True:
            records = self._journal.records()
            polls = [r for r in records if r.state == State.SUBMITTED]
            sends = [r for r in records if r.state == State.PENDING and r.row in self._requests]
            saves = [r for r in records if r.state == State.COMPLETED]
            if not (polls or sends or saves):
                return
            if not await self._round(polls, sends, saves) or self._stopped:
                return

    async def _round(
        self, polls: list[RowRecord], sends: list[RowRecord], saves: list[RowRecord]
    ) -> bool:
        """One batch over ``polls`` and ``sends``; True when rows became pending again."""
        order: list[int] = []
        cancelled = {r.row for r in polls if r.cancel_requested}
        again = False

        async def items() -> AsyncIterator[Prediction | Request]:
            for record in polls:
                order.append(record.row)
                yield Prediction(str(record.prediction_id))
            for record in sends:
                request = self._requests[record.row]
                if self._carryover is not None:
                    await self._carryover.room(request.generations)
                order.append(record.row)
                yield request

        def sending(index: int) -> None:
            self._journal.sending(order[index])
            self._move(order[index], State.SUBMITTING)

        def not_created(index: int) -> None:
            # A 429, a 5xx or a refused connection: nothing exists, so a crash before the
            # re-send must not leave the row "uncertain".
            self._journal.reset([order[index]])
            self._move(order[index], State.PENDING)

        def submitted(index: int, prediction_id: str) -> None:
            if self._states[order[index]] != State.SUBMITTED:
                # An answer that arrives after interrupt(): the engine cancels it next.
                cancelling = self._interrupted and not self._options.leave_running
                self._journal.submitted(order[index], prediction_id, cancelling=cancelling)
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
                            if result.ok:
                                await send.send(self._completed(row, result))
                            else:
                                again |= self._failed(row, result, row in cancelled)
                except OutOfCreditsError as error:
                    self._stopped = "out of credits"
                    self._display.note(
                        f"the job stopped submitting: {error.message}. Rows not sent stay "
                        "pending; add credits and run the same command again to resume."
                    )
        return again

    def _completed(self, row: int, result: BatchResult) -> _Save:
        assert result.prediction_id is not None
        self._journal.completed(row, result.prediction_id, result.output)
        self._move(row, State.COMPLETED)
        return _Save(row, self._key(row), result.prediction_id, result.output, result)

    def _failed(self, row: int, result: BatchResult, cancelled_by_stop: bool) -> bool:
        error = result.error
        assert error is not None
        name, message = error.name or type(error).__name__, error.message
        line = self._catalog.rows[row - 1].line
        if isinstance(error, PredictionCanceledError) and cancelled_by_stop:
            self._journal.reset([row], note="cancelled when the job was stopped; sent again")
            self._move(row, State.PENDING)
            return True
        if isinstance(error, SubmissionUncertainError):
            state = State.UNCERTAIN
        elif result.prediction_id is None and isinstance(error, InvalidRequestError):
            state = State.INVALID
        elif result.prediction_id is None and not isinstance(error, BadRequestError):
            # Refused before any prediction existed (out of credits, 5xx, 401...):
            # nothing runs, nothing is charged; a later run sends it.
            self._journal.reset([row], note=f"not sent: {name}: {message}")
            self._move(row, State.PENDING)
            return False
        else:
            state = State.FAILED
        self._journal.ended(row, state, name, message, result.prediction_id)
        self._move(row, state)
        self._display.note(f"row {row} (line {line}) {state}: {name}: {message}")
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
                except DownloadError as error:
                    self._journal.note_error(save.row, error.name or "DownloadError", error.message)
                    self._display.note(
                        f"row {save.row}: download failed, a re-run tries again: {error.message}"
                    )
                    continue
                self._journal.saved(save.row, [path.name for path in paths])
                self._move(save.row, State.DONE)
                if self._options.thumbnails:  # for the report, while there is time
                    for path in paths:
                        await anyio.to_thread.run_sync(thumbnail, path, out)

    # -- after ----------------------------------------------------------------------

    def _settle(self) -> None:
        """Write down what a stop left behind (runs shielded, after any interrupt)."""
        records = self._journal.records()
        running = [r.row for r in records if r.state == State.SUBMITTED]
        if self._interrupted and running and not self._options.leave_running:
            self._journal.request_cancel(running)  # those interrupt() could not know yet
        for record in records:
            if record.state == State.SUBMITTING:
                self._journal.ended(
                    record.row, State.UNCERTAIN, "SubmissionUncertain", UNCERTAIN_AFTER_STOP
                )
                self._move(record.row, State.UNCERTAIN)
        if self._interrupted and running:
            what = "left running" if self._options.leave_running else "cancelled on the server"
            self._display.note(
                f"stopped: {len(running)} running prediction(s) {what}; run the same "
                "command again to resume"
            )

    def _key(self, row: int) -> str:
        return self._catalog.rows[row - 1].key

    def _move(self, row: int, state: str, *, notify: bool = True) -> None:
        old = self._states.get(row)
        if old is not None:
            self._counts[old] -= 1
        self._states[row] = state
        self._counts[state] += 1
        if notify:
            self._display.update(self._counts, len(self._states))
