"""A POST's answer written to the journal, or kept where a full disk still takes it.

The two answers a stop must never lose (:mod:`fashn_async.bulk._rescue`): the id of the
prediction a POST created, and that a POST created nothing (answered 429 or 5xx, or
never sent after its ``submitting`` write). Each is written through the job's
:class:`~fashn_async.bulk._writes.JournalWrites`; one the journal refuses is kept in the
reserve's head for the journal to take back, and one even that refuses (a failing disk)
is put in a sentence (``say``) for a person to act on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from fashn_async.bulk._journal import Journal
from fashn_async.bulk._writes import JournalWrites

__all__ = ["record_created", "record_not_created"]


def record_created(
    journal: Journal,
    writes: JournalWrites,
    row: int,
    prediction_id: str,
    canceling: bool,
    say: Callable[[str], None],
) -> bool:
    """Record that ``row``'s POST created ``prediction_id`` (``canceling``: the job is
    stopping, and would send it a cancel). Returns whether the journal holds its cancel
    request now, the only case in which the cancel may be sent: otherwise it is recorded
    running (at once, later, or in the reserve's head), as it will stay."""
    cancel = functools.partial(journal.submitted, canceling=True)
    if canceling and writes(cancel, row, prediction_id, keep=False):
        return True
    if writes(journal.submitted, row, prediction_id) or journal.rescue(row, prediction_id):
        return False
    say(
        f"line {_line(journal, row)}: prediction {prediction_id} was created, but the "
        "disk refused to record its id; it may be charged: collect it by that id (the row "
        "is not sent again unless asked, --resend-uncertain)"
    )
    return False


def record_not_created(
    journal: Journal,
    writes: JournalWrites,
    row: int,
    note: str | None = None,
    *,
    say: Callable[[str], None],
) -> None:
    """Make ``row`` ``pending`` again (with ``note``): its last POST created nothing, or
    was never sent. Only for such a POST: one that may have landed unanswered leaves its
    row ``submitting``, which becomes ``uncertain``."""
    if writes(journal.reset, [row], note) or journal.rescue(row, None):
        return
    say(
        f"line {_line(journal, row)}: its POST created nothing (nothing was charged), but "
        "the disk refused to record that: if the next run calls the row uncertain, sending "
        "it again (--resend-uncertain) pays for it once"
    )


def _line(journal: Journal, row: int) -> int | str:
    current = journal.catalog.get(row)
    return current.line if current is not None else "?"
