"""A run's first and last steps: the journal brought in line with the disk and the
server before anything is sent, and after any stop.

Before (:func:`reconcile`): rows caught mid-POST by a crash become ``uncertain``, rows
the options send again become ``pending``, done rows whose files are gone ``completed``
(downloaded again); :func:`pace_restart` seeds the client's limits with what the dead
run may still have in flight. After (:func:`settle`): rows still running when a stop
left the batch are recorded ``canceled`` (a re-run sends them again) where the stop
recorded their cancel before sending it, else they stay ``submitted``; rows still
mid-POST become ``uncertain``, unless the answer to their POST waits in the reserve's
head (:mod:`~fashn_async.bulk._rescue`) for the next run to take back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Container, Mapping, Sequence

from fashn_async._client import AsyncFashn
from fashn_async._models import Request
from fashn_async.bulk._journal import Journal
from fashn_async.bulk._outcome import (
    CANCELED_BY_STOP,
    UNCERTAIN_AFTER_CRASH,
    UNCERTAIN_AFTER_STOP,
    JobOptions,
)
from fashn_async.bulk._pacing import (
    carryover,
    counted_at,
    hold_for_predecessors,
    seed_submit_window,
)
from fashn_async.bulk._rescue import kept
from fashn_async.bulk._rows import RowRecord, State
from fashn_async.bulk._words import plural

__all__ = ["pace_restart", "reconcile", "settle", "uncertain_note"]

#: An earlier run's rows that may be running on the server unknown to the journal.
_MAY_RUN = frozenset({State.SUBMITTING, State.UNCERTAIN})
#: Uncertain rows named by line in the note; the manifest lists them all.
_LISTED = 20


async def pace_restart(
    client: AsyncFashn,
    journal: Journal,
    requests: Mapping[int, Request],
    options: JobOptions,
) -> str | None:
    """Seed ``client``'s submit window with every POST the journal recorded in the last
    hour (kept apart from the rows, so a row reset or canceled still counts its send),
    and count the dead run's possibly-running predictions against its in-flight cap.
    Call it before :func:`reconcile`, which resets rows. Returns a note for the person
    running the job when slots are held, else None."""
    timeout = options.server_acts_within
    timeout, wall = (client.timeout if timeout is None else timeout), time.time()
    sent = [
        (counted_at(at, answered, timeout), getattr(requests.get(row), "generations", 1))
        for row, at, answered in journal.sends()
    ]
    seed_submit_window(client, carryover(sent, wall, ahead=timeout))
    held, seconds = await hold_for_predecessors(
        client,
        [
            # (No answer: else not in _MAY_RUN. A clock set back: not past the timeout.)
            min(counted_at(r.sent_at, None, timeout), wall + timeout)
            for r in journal.records()
            if r.state in _MAY_RUN and r.sent_at is not None
        ],
        options.longest_latency,
    )
    if not held:
        return None
    return (
        f"the last run left {plural(held, 'row')} mid-POST, which may be running on the "
        f"server: {held} fewer run at once for up to {math.ceil(seconds)} s"
    )


def reconcile(journal: Journal, options: JobOptions, sendable: Container[int]) -> None:
    """Bring the journal in line with the disk before a run (see the module docstring);
    only rows in ``sendable`` (valid in the catalog now) are sent again."""
    out = options.out
    for record in journal.records():
        state, number = record.state, record.row
        if state == State.SUBMITTING:
            journal.ended(number, State.UNCERTAIN, "SubmissionUncertain", UNCERTAIN_AFTER_CRASH)
            state = State.UNCERTAIN  # (sent again below, if asked)
        if (state == State.UNCERTAIN and options.resend_uncertain) or (
            state == State.FAILED and options.retry_failed
        ):
            if number in sendable:
                journal.reset([number], note=f"sent again ({state} before)")
        elif state == State.DONE and not all((out / name).is_file() for name in record.files):
            assert record.prediction_id is not None
            journal.completed(number, record.prediction_id, record.outputs)


def uncertain_note(records: Sequence[RowRecord]) -> str | None:
    """What a person must know of the ``uncertain`` rows a run leaves alone, or None.

    Two kinds: a POST that went out and got no usable answer (no prediction id), and a
    prediction the API answered 404 for twice (it may have stopped tracking it, NOTES.md).
    Either may have been charged.
    """
    uncertain = [r for r in records if r.state == State.UNCERTAIN]
    if not uncertain:
        return None
    unanswered = [r for r in uncertain if r.prediction_id is None]
    untracked = [r for r in uncertain if r.prediction_id is not None]
    parts = []
    if unanswered:
        one = len(unanswered) == 1
        parts.append(
            f"{plural(len(unanswered), 'uncertain row')}, not re-sent: "
            f"{'its' if one else 'their'} POST may have landed without an answer "
            f"({_lines(unanswered)})."
        )
    if untracked:
        one = len(untracked) == 1
        parts.append(
            f"{plural(len(untracked), 'uncertain row')}, not re-sent: the API no longer "
            f"finds {'its prediction' if one else 'their predictions'} (404 twice; "
            f"{_lines(untracked)}); {'it' if one else 'each'} may have finished and been "
            "charged, its outputs out of reach."
        )
    one = len(uncertain) == 1
    parts.append(
        f"Re-run with --resend-uncertain to send {'it' if one else 'them'} again; "
        f"{'it' if one else 'each'} may then be charged twice."
    )
    return " ".join(parts)


def _lines(records: Sequence[RowRecord]) -> str:
    """``line 3, line 7`` (the first :data:`_LISTED`, then how many more)."""
    listed = ", ".join(f"line {r.line}" for r in records[:_LISTED])
    more = f" and {len(records) - _LISTED} more" if len(records) > _LISTED else ""
    return listed + more


def settle(
    journal: Journal, *, stopped: bool, options: JobOptions, gave_up: Container[int] = ()
) -> tuple[list[tuple[int, str]], int]:
    """Record what a run left behind (see the module docstring); plain calls only.

    ``gave_up``: submitted rows whose polling gave up in this run; the batch had let
    them go, so the stop sent them no cancel: they stay ``submitted``, as do rows whose
    cancel the journal did not record (``cancel_requested``: then none was sent, or it
    was not the stop's to claim).

    Returns:
        The rows moved, as ``(row, new state)``, and how many predictions were running
        when the job stopped.

    Raises:
        JournalWriteError: the journal could not take the records.
    """
    records = journal.records()
    moved: list[tuple[int, str]] = []
    running = [r for r in records if r.state == State.SUBMITTED and r.row not in gave_up]
    canceled = [r.row for r in running if r.cancel_requested]
    if stopped and canceled and not options.leave_running:
        # Sent a cancel as the batch left: recorded, a re-run checks them (and collects
        # one that had finished anyway, or that the cancel did not reach).
        journal.canceled(canceled, CANCELED_BY_STOP)
        moved += [(row, State.CANCELED) for row in canceled]
    answered = {(r.row, r.sends) for r in kept(journal.path.parent)}
    for record in records:
        if record.state == State.SUBMITTING and (record.row, record.sends) not in answered:
            journal.ended(record.row, State.UNCERTAIN, "SubmissionUncertain", UNCERTAIN_AFTER_STOP)
            moved.append((record.row, State.UNCERTAIN))
    return moved, len(running)
