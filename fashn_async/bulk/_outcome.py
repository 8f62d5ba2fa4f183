"""What a bulk run is given and what it gives back: its options, the display it reports
to, its summary with the exit code, and what becomes of a row whose result is not a
success (:func:`failure_outcome`, a pure function of the error)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from fashn_async.bulk._rows import JournalWriteError, State
from fashn_async.bulk._words import counted, plural
from fashn_async.errors import (
    BadRequestError,
    FashnError,
    InvalidRequestError,
    PollingError,
    PredictionCanceledError,
    SubmissionUncertainError,
)

if TYPE_CHECKING:
    from fashn_async.bulk._journal import Journal

__all__ = [
    "CANCELED_BY_STOP",
    "NOT_FOUND",
    "EXIT_DISK",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "LONGEST_LATENCY",
    "SERVER_ACTS_WITHIN",
    "UNCERTAIN_AFTER_CRASH",
    "UNCERTAIN_AFTER_STOP",
    "Display",
    "JobOptions",
    "JobSummary",
    "Outcome",
    "failure_outcome",
]

EXIT_OK, EXIT_SOME_FAILED, EXIT_DISK, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Seconds a prediction runs at most: three times the upper end of the tryon class's
#: 5 to 11 s (the API docs, as ``Polling.prior``).
LONGEST_LATENCY = 33.0
#: Seconds by which a server has acted on a POST at the latest: the client's default
#: ``timeout`` (``AsyncFashn``), which the command line scales with an emulator's time.
SERVER_ACTS_WITHIN = 60.0

UNCERTAIN_AFTER_CRASH = (
    "the job stopped while this row's POST was on the wire: the prediction may exist and "
    "be charged, so it is not re-sent (--resend-uncertain sends it again)"
)
UNCERTAIN_AFTER_STOP = (
    "the job was stopped while this row's POST was on the wire; a prediction it created "
    "was canceled (best effort). Not re-sent without --resend-uncertain"
)
#: The error name noted on a row whose polling gave up on a 404.
NOT_FOUND = "NotFound"
CANCELED_BY_STOP = (
    "sent a cancel when the job was stopped; a re-run checks it and sends it again "
    "(one that had finished anyway, or that the cancel did not reach, is collected)"
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
            the in-flight cap for this long after the server may have started them.
        server_acts_within: Seconds after a POST went out by which the server has acted
            on it (counted it, started its prediction) at the latest; a restarted job
            dates its predecessor's unanswered POSTs so. None: the client's ``timeout``
            (the CLI scales it with ``--time-scale``, as the emulator's delays are).
    """

    out: Path
    resend_uncertain: bool = False
    retry_failed: bool = False
    leave_running: bool = False
    downloads: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    thumbnails: bool = True
    longest_latency: float = attrs.field(default=LONGEST_LATENCY, validator=attrs.validators.gt(0))
    server_acts_within: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )


@attrs.frozen(kw_only=True)
class JobSummary:
    """How a run ended: rows per state, and whether it was stopped early.

    Attributes:
        counts: Rows of the catalog per state.
        removed: Rows no longer in the catalog per state (sent by an earlier run, their
            records kept): reported, never counted against the exit code (a re-run
            sends none of them again).
        interrupted: Stopped by :meth:`BulkJob.interrupt` (Ctrl-C).
        stopped: Why it stopped early otherwise (``out of credits``, ``disk``).
        problem: The disk problem that stopped it, in a sentence.
        stopped_running: Predictions running when it was stopped (sent a cancel,
            or with ``left_running`` left running).
        left_running: The stop left them running (``--leave-running``).
        not_canceled: Of ``stopped_running``, those not recorded ``canceled``: the
            journal refused to record their cancels, so none was sent (or, its id not
            yet written, the stop cannot tell), and a re-run collects them.
    """

    counts: Mapping[str, int]
    removed: Mapping[str, int] = attrs.field(factory=dict)
    interrupted: bool = False
    stopped: str | None = None
    problem: str | None = None
    stopped_running: int = 0
    left_running: bool = False
    not_canceled: int = 0

    @classmethod
    def of(cls, journal: Journal, **how: Any) -> JobSummary:
        """The summary of ``journal``'s rows as they are now; ``how``: how the run ended."""
        return cls(
            counts=journal.counts(removed=False), removed=journal.counts(removed=True), **how
        )

    @property
    def total(self) -> int:
        """Rows in the catalog."""
        return sum(self.counts.values())

    @property
    def counts_line(self) -> str:
        """``60 rows: 59 done, 1 failed; no longer in the catalog: 1 canceled``."""
        line = f"{plural(self.total, 'row')}: {counted(self.counts, always=(State.DONE,))}"
        gone = any(self.removed.values())
        return f"{line}; no longer in the catalog: {counted(self.removed)}" if gone else line

    @property
    def exit_code(self) -> int:
        """0: every row done; 1: some are not; 2: a disk problem stopped it; 130: stopped
        by Ctrl-C (a re-run resumes after either stop)."""
        if self.problem is not None:
            return EXIT_DISK
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if self.counts.get(State.DONE, 0) == self.total else EXIT_SOME_FAILED


class Outcome(enum.Enum):
    """What becomes of a row whose result is an error (values: the journal states)."""

    NEVER_SENT = "never sent"  # its ``submitting`` write failed: the POST never went out
    CANCELED_BY_STOP = "canceled by this stop"  # recorded ``canceled``; a re-run sends it
    SEND_AGAIN = "send again"  # canceled earlier (a stop, by hand): not charged
    NOT_CREATED = "not created"  # refused before any prediction existed: a later run
    COLLECT_LATER = "collect later"  # created, polling gave up: a re-run polls it by id
    UNCERTAIN = State.UNCERTAIN
    INVALID = State.INVALID
    FAILED = State.FAILED


def failure_outcome(
    error: FashnError,
    prediction_id: str | None,
    *,
    stopping: bool,
    not_found_before: bool = False,
) -> Outcome:
    """What becomes of a row whose batch result is ``error``.

    Args:
        error: The result's error.
        prediction_id: The prediction's id, None when none was created (as far as known).
        stopping: The job is being stopped (Ctrl-C, a disk problem).
        not_found_before: Polling its prediction gave up on a 404 before (noted
            :data:`NOT_FOUND` in the journal).
    """
    if isinstance(error, JournalWriteError):
        return Outcome.NEVER_SENT
    if isinstance(error, PredictionCanceledError):
        return Outcome.CANCELED_BY_STOP if stopping else Outcome.SEND_AGAIN
    if isinstance(error, SubmissionUncertainError):
        return Outcome.UNCERTAIN
    if isinstance(error, PollingError):
        # Created, and maybe done and charged: never "failed" (that is sent again for
        # free). A re-run polls it by id. A 404 may be passing: only a second one (in a
        # later run) says the API no longer tracks it (NOTES.md), and then it
        # may be done, its outputs out of reach: only --resend-uncertain sends it again.
        not_found = error.status_code == 404
        return Outcome.UNCERTAIN if not_found and not_found_before else Outcome.COLLECT_LATER
    if prediction_id is None and isinstance(error, InvalidRequestError):
        return Outcome.INVALID
    if prediction_id is None and not isinstance(error, BadRequestError):
        # Out of credits, a 5xx, a 401...: nothing runs, nothing is charged.
        return Outcome.NOT_CREATED
    return Outcome.FAILED
