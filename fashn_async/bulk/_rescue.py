"""POST answers the journal could not take, kept where a full disk still takes them.

A POST's answer is what a stop must never lose. Its prediction id: without it the row is
``uncertain``, and sending it again may pay twice. Or that it created nothing (answered
429 or 5xx, or never sent after its ``submitting`` write): without that the row is
``uncertain`` too, though nothing was paid, and a plain re-run does not send it. When the
journal refuses to record the answer (``submitted``, or the reset to ``pending``), it is
written into the head of the journal's reserve file
(:data:`~fashn_async.bulk._folder.RESCUE_BYTES`, which releasing the reserve keeps), in
place: overwriting bytes a file already holds takes no new space on the file systems a
job meets (ext4, xfs, tmpfs; on a copy-on-write one, btrfs or zfs, it may fail like any
write, and then the job names the row and id in its output).

Each record is one JSON line, ``{"row": 3, "sends": 1, "id": "..."}``, or ``{"row": 3,
"sends": 1, "unsent": true}`` for a POST that created nothing; the zero bytes after the
last one mark the end. The journal takes them back (:meth:`JournalRescue.take_rescued`)
before a stopped run settles, or else when the next run opens it, before anything is
sent.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Final

import attrs

from fashn_async._atomic import overwrite
from fashn_async.bulk._catalog import CatalogRow
from fashn_async.bulk._folder import RESCUE_BYTES, RESERVE_NAME
from fashn_async.bulk._rows import State, writes

__all__ = ["JournalRescue", "Rescued", "forget", "keep", "kept", "taken_note"]

#: The longest record kept (a prediction id is far shorter; a longer one is not kept).
_LONGEST: Final = 512


class JournalRescue:
    """The journal's side of the reserve's head: a base of
    :class:`~fashn_async.bulk._journal.Journal`, which owns the state named here."""

    path: Path
    guard: threading.Lock
    _db: sqlite3.Connection

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def rescue(self, row: int, prediction_id: str | None) -> bool:
        """Keep the answer to ``row``'s last POST, which the journal refused to record,
        in the reserve's head (written in place: no new space needed), for
        :meth:`take_rescued`: the id of the prediction it created, or None when it
        created nothing (answered 429 or 5xx, or never sent). The latter is kept only
        while the row is ``submitting`` (else nothing waits on it). False when even that
        failed."""
        try:
            with self.guard:
                query = "SELECT sends, state FROM rows WHERE row = ?"
                found = self._db.execute(query, (row,)).fetchone()
                if found is None:
                    return False
                sends, state = found
                if prediction_id is None and state != State.SUBMITTING:
                    return True
                return keep(self.path.parent, row, sends, prediction_id)
        except sqlite3.Error:
            return False

    @writes
    def take_rescued(self) -> list[tuple[int, str | None]]:
        """Record the POST answers :meth:`rescue` kept, then forget them; returns the
        ``(row, prediction id or None)`` recorded.

        A row takes an answer back only while it is still waiting for it: ``submitting``,
        or ``uncertain`` with no id, and not sent again since (the same count of POSTs).
        With an id it becomes ``submitted``: polled by its id, never sent again. A POST
        that created nothing makes it ``pending``: sent again by a plain re-run.

        Raises:
            JournalWriteError: the journal refused the records; the answers stay kept.
        """
        rescued = kept(self.path.parent)
        if not rescued:  # (a head garbled by a crash would refuse every later record)
            forget(self.path.parent)
            return []
        taken = []
        with self._transaction():
            for r in rescued:
                values: tuple[object, ...]
                if r.prediction_id is None:  # created nothing: nothing runs, sent again
                    answer, values = "state = ?, sent_at = NULL", (State.PENDING,)
                else:
                    answer = "state = ?, prediction_id = ?, submitted_at = ?"
                    values = (State.SUBMITTED, r.prediction_id, time.time())
                cursor = self._db.execute(
                    f"UPDATE rows SET {answer}, error_name = NULL, error_message = NULL, "  # noqa: S608 - constant
                    "finished_at = NULL, cancel_requested = 0 WHERE row = ? AND sends = ? "
                    "AND prediction_id IS NULL AND state IN (?, ?)",
                    (*values, r.row, r.sends, State.SUBMITTING, State.UNCERTAIN),
                )
                if cursor.rowcount:
                    taken.append((r.row, r.prediction_id))
        forget(self.path.parent)  # recorded, or stale (the row went on without it)
        return taken


@attrs.frozen
class Rescued:
    """The answer to a row's ``sends``-th POST (so that it is never mistaken for the
    answer to a later one) the journal refused: its prediction id, or None when it
    created nothing."""

    row: int
    sends: int
    prediction_id: str | None


def keep(directory: Path, row: int, sends: int, prediction_id: str | None) -> bool:
    """Add a record to the reserve's head, in place and flushed to the disk (None: the
    POST created nothing); False when it could not be written (the head is full, the
    file gone, the disk failing)."""
    answer: dict[str, object] = {"unsent": True} if prediction_id is None else {"id": prediction_id}
    line = json.dumps({"row": row, "sends": sends, **answer}, separators=(",", ":"))
    data = (line + "\n").encode("utf-8")
    if len(data) > _LONGEST:
        return False
    path = directory / RESERVE_NAME
    try:
        head = _records(path)
        if data.rstrip(b"\n") in head.split(b"\n"):
            return True  # kept already (a POST answered "not created" and then failed)
        if head and not head.endswith(b"\n"):  # one cut short by a crash: kept apart
            data = b"\n" + data
        if len(head) + len(data) > RESCUE_BYTES:
            return False
        overwrite(path, len(head), data)
    except OSError:
        return False
    return True


def kept(directory: Path) -> list[Rescued]:
    """The records in the reserve's head (a line that cannot be read is skipped: a write
    cut short by a crash)."""
    try:
        head = _records(directory / RESERVE_NAME)
    except OSError:
        return []
    found = []
    for line in head.splitlines():
        try:
            record = json.loads(line)
            answer = None if record.get("unsent") is True else str(record["id"])
            found.append(Rescued(int(record["row"]), int(record["sends"]), answer))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def forget(directory: Path) -> None:
    """Zero the reserve's head, in place (best effort: a record left behind is taken
    back only by a row it still fits, see :meth:`Journal.take_rescued`)."""
    path = directory / RESERVE_NAME
    with contextlib.suppress(OSError):
        used = len(_records(path))
        if used:
            overwrite(path, 0, b"\0" * used)


def taken_note(row: CatalogRow | None, prediction_id: str | None) -> str:
    """What a person reads of a POST's answer the journal took back from the reserve."""
    line = f"line {row.line if row is not None else '?'}"
    if prediction_id is None:
        return (
            f"{line}: the last run's POST created nothing (a 429, a 5xx, or never sent), "
            f"which it could not write to the journal but kept in {RESERVE_NAME}: the row "
            "is pending, sent again, not uncertain"
        )
    return (
        f"{line}: prediction {prediction_id}, which the last run could not write to the "
        f"journal, was found in {RESERVE_NAME}: it is collected, not sent again"
    )


def _records(path: Path) -> bytes:
    """The reserve's head up to its first zero byte: the records written so far."""
    with path.open("rb") as fh:
        return fh.read(RESCUE_BYTES).split(b"\0", 1)[0]
