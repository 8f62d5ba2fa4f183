"""The job's journal: a SQLite file in the output folder that survives any crash.

Each row moves ``pending -> submitting -> submitted (with its id) -> completed (outputs
known) -> done (files on disk)``, or ends ``failed``, ``invalid`` or ``uncertain``, or
``canceled`` when a stop canceled its prediction (a re-run sends it again). Every
step is one short transaction, written (WAL, ``synchronous=FULL``) before the network
step it announces and after the one it records, so a ``kill -9`` anywhere leaves a state
a re-run can act on without paying twice:

- ``submitting`` means the POST may have landed: the next run calls the row
  ``uncertain`` and re-sends it only when told to (``--resend-uncertain``);
- ``submitted`` rows are polled by their id, never re-sent;
- ``completed`` rows are downloaded again (files are written whole or not at all).

Rows are known by their identity (the ``id`` column, else a hash of their values), not
by their place in the file: rows not sent yet may be edited, added or removed between
runs; a row already sent keeps its record, and an edit to it is reported
(:attr:`Journal.edits`). A row new by identity that asks for what a sent row no longer
in the catalog asked for is that row, written another way (``plan_sync``). A row sent
again (canceled, ``--retry-failed``, ``--resend-uncertain``) is sent as the catalog has
it now, and its record takes those values (:meth:`Journal.reset`): the journal always
holds what was last sent. What
decides every request (base URL, model, output format) must not change: a run with other
settings under the same journal is refused, with the reason.

A write that fails (a full or broken disk) raises :class:`JournalWriteError`. The folder
keeps a small reserve file (``.journal.reserve``) that :meth:`Journal.release_reserve`
frees, so that a job stopped by a full disk still has room to record its stop; a POST's
answer the journal refused all the same (a prediction id, or that it created nothing) is
kept in the reserve's head (:meth:`Journal.rescue`) and taken back
(:meth:`Journal.take_rescued`) before anything is sent again.

A stop records the cancels it is about to send (:meth:`Journal.request_cancel`, the
``cancel_requested`` column) before sending them, and then records ``canceled`` only the
rows it recorded so: where the journal refused, it sent none, and the rows stay
``submitted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from fashn_async._redact import safe_repr
from fashn_async._shield import outlive_cancels
from fashn_async._sources import in_io_thread
from fashn_async.bulk._catalog import CatalogRow
from fashn_async.bulk._edits import canonical_json
from fashn_async.bulk._folder import Hold, refuse_an_orphaned_job, release_reserve, reserve
from fashn_async.bulk._folder import lock as hold
from fashn_async.bulk._opening import JournalOpening, opening_error
from fashn_async.bulk._rescue import JournalRescue, taken_note
from fashn_async.bulk._rows import (
    COLUMNS,
    SCHEMA,
    JournalWriteError,
    RowRecord,
    State,
    record_of,
    writes,
)
from fashn_async.errors import ConfigurationError

__all__ = [
    "Journal",
]

JOURNAL_NAME: Final = "journal.sqlite3"
#: Seconds of POSTs the journal keeps (a restart seeds its submit window with them; the
#: API's window is 60 s).
SENDS_KEPT: Final = 3600.0


class Journal(JournalOpening, JournalRescue):
    """The durable state of one bulk job; open it with :meth:`open`.

    Methods write at once (one transaction each, fsynced): the write must be on disk
    before the request it announces goes out. Each takes well under a millisecond to a
    few. A failed write raises :class:`JournalWriteError` and changes nothing.
    :meth:`sending_off_loop` makes the write that a submit grant waits for in a worker
    thread; every access holds :attr:`guard`, so the two threads never interleave.

    Attributes:
        catalog: The current catalog row of each journal row (by journal row number).
        edits: What the catalog changed since the last run, one sentence each.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection, lock: Hold | None) -> None:
        self.path = path
        self.guard = threading.Lock()
        self._db = connection
        self._lock = lock
        self.catalog: dict[int, CatalogRow] = {}
        self.edits: list[str] = []

    @safe_repr
    def __repr__(self) -> str:
        return f"<Journal {self.path}>"

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        meta: Mapping[str, str | None],
        rows: Sequence[CatalogRow],
    ) -> Journal:
        """Open the folder's journal, or create it with ``rows`` as ``pending``/``invalid``.

        Raises:
            JournalBusyError: another job holds the folder.
            JournalMismatchError: the journal was made for another catalog or API.
        """
        resumable = False
        try:
            resumable = (directory / JOURNAL_NAME).exists()  # (a name too long raises)
            return cls._open(directory, meta, rows)
        except (JournalWriteError, sqlite3.Error, OSError) as exc:
            raise opening_error(exc, directory / JOURNAL_NAME, resumable=resumable) from None

    @classmethod
    def _open(
        cls,
        directory: Path,
        meta: Mapping[str, str | None],
        rows: Sequence[CatalogRow],
    ) -> Journal:
        if directory.exists() and not directory.is_dir():
            raise ConfigurationError(f"{directory} exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        lock = hold(directory)
        path = directory / JOURNAL_NAME
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA busy_timeout=10000")
                db.execute("PRAGMA journal_size_limit=1048576")
                journal = cls(path, db, lock)
                known = journal._known()
                if not known:
                    refuse_an_orphaned_job(directory, JOURNAL_NAME)
                db.executescript(SCHEMA)
                _add_answers(db)
                _add_asks(db)
                if known:
                    journal._check(known, meta)
                    taken = journal.take_rescued()  # before the reserve is made whole
                    journal._sync(rows)
                    journal.edits += [taken_note(journal.catalog.get(r), p) for r, p in taken]
                else:
                    journal._create(meta, rows)
                reserve(directory)
            except BaseException:
                db.close()
                raise
        except BaseException:
            lock.close()
            raise
        return journal

    def release_reserve(self) -> bool:
        """Free the reserve file's space for the journal (but its head, where
        :meth:`rescue` writes); False when there was none to free."""
        return release_reserve(self.path.parent)

    def close(self) -> None:
        """Close the database and let another job have the folder."""
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------

    def meta(self) -> dict[str, str | None]:
        """The job's settings, as written when it was created."""
        with self.guard:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def records(self) -> list[RowRecord]:
        """Every row, in row order."""
        query = f"SELECT {COLUMNS} FROM rows ORDER BY position IS NULL, position, row"  # noqa: S608 - constant
        with self.guard:
            return [record_of(values) for values in self._db.execute(query).fetchall()]

    def sends(self) -> list[tuple[int, float, float | None]]:
        """Every POST recorded in the last :data:`SENDS_KEPT` seconds, as ``(row, sent,
        answered)`` wall-clock times: when it was about to go out, and when its answer
        came (None: none was recorded, the run died or was stopped mid-POST, or the
        journal predates answers). Kept apart from the rows, whose ``sent_at`` a reset
        clears."""
        with self.guard:
            return list(self._db.execute("SELECT row, at, answered FROM sends ORDER BY at"))

    def counts(self, *, removed: bool | None = None) -> dict[str, int]:
        """Rows per state: all of them, or (``removed``) only those no longer in the
        catalog (sent before, their records kept), or only the others."""
        where = {None: "", True: "WHERE position IS NULL", False: "WHERE position IS NOT NULL"}
        counts = dict.fromkeys(State.ALL, 0)
        with self.guard:
            query = f"SELECT state, count(*) FROM rows {where[removed]} GROUP BY state"  # noqa: S608 - constant
            counts.update(self._db.execute(query))
        return counts

    def runs(self) -> list[tuple[float, float | None, str | None]]:
        """Every run of the job: start, end and outcome (None: it was killed)."""
        query = "SELECT started_at, ended_at, outcome FROM runs ORDER BY id"
        with self.guard:
            rows = self._db.execute(query).fetchall()
        return [(start, end, outcome) for start, end, outcome in rows]

    # -- state changes (each one transaction) --------------------------------------

    @writes
    def sending(self, row: int) -> None:
        """The row's POST is about to go out: from now on it may exist on the server."""
        now = time.time()
        with self._transaction():
            self._db.execute(
                "UPDATE rows SET state = ?, sends = sends + 1, sent_at = ?, "
                "error_name = NULL, error_message = NULL WHERE row = ?",
                (State.SUBMITTING, now, row),
            )
            self._db.execute("INSERT INTO sends (row, at) VALUES (?, ?)", (row, now))

    async def sending_off_loop(self, row: int) -> None:
        """:meth:`sending` in an I/O thread: its fsync never stalls the event loop.

        The write completes even if the caller is canceled meanwhile, and the cancel
        reaches the caller only once it is done (the row may then be ``submitting``; the
        caller puts it back, a write that must come after this one).

        Raises:
            JournalWriteError: the write failed; nothing changed.
        """
        write = asyncio.ensure_future(in_io_thread(self.sending, row))
        if await outlive_cancels(write):
            with contextlib.suppress(JournalWriteError, asyncio.CancelledError):
                write.result()  # retrieved: the cancel is what the caller hears of
            raise asyncio.CancelledError
        write.result()

    @writes
    def submitted(self, row: int, prediction_id: str, *, canceling: bool = False) -> None:
        """The server answered with the row's prediction id (``canceling``: too late,
        the job is stopping and cancels it)."""
        now = time.time()
        with self._transaction():
            self._db.execute(
                "UPDATE rows SET state = ?, prediction_id = ?, submitted_at = ?, "
                "cancel_requested = ? WHERE row = ?",
                (State.SUBMITTED, prediction_id, now, int(canceling), row),
            )
            self._answered([row], now)

    @writes
    def completed(self, row: int, prediction_id: str, outputs: Sequence[str]) -> None:
        """The prediction completed: its outputs are known, not yet on disk."""
        self._db.execute(
            "UPDATE rows SET state = ?, prediction_id = ?, outputs = ?, finished_at = "
            "coalesce(finished_at, ?), cancel_requested = 0, error_name = NULL, "
            "error_message = NULL WHERE row = ?",
            (State.COMPLETED, prediction_id, json.dumps(list(outputs)), time.time(), row),
        )

    @writes
    def saved(self, row: int, files: Sequence[str]) -> None:
        """Every output of the row is on disk."""
        self._db.execute(
            "UPDATE rows SET state = ?, files = ?, error_name = NULL, error_message = NULL "
            "WHERE row = ?",
            (State.DONE, json.dumps(list(files)), row),
        )

    @writes
    def ended(
        self,
        row: int,
        state: str,
        name: str | None,
        message: str | None,
        prediction_id: str | None = None,
    ) -> None:
        """The row ended ``failed``, ``invalid`` or ``uncertain``, or kept its state
        (``completed`` with a failed download) with this error."""
        self._db.execute(
            "UPDATE rows SET state = ?, error_name = ?, error_message = ?, prediction_id = "
            "coalesce(?, prediction_id), finished_at = ?, cancel_requested = 0 WHERE row = ?",
            (state, name, message, prediction_id, time.time(), row),
        )

    @writes
    def note_error(self, row: int, name: str | None, message: str | None) -> None:
        """Keep the row's state, with this error (a download that failed, say)."""
        self._db.execute(
            "UPDATE rows SET error_name = ?, error_message = ? WHERE row = ?", (name, message, row)
        )

    @writes
    def reset(self, rows: Iterable[int], note: str | None = None) -> None:
        """Make rows ``pending`` again (nothing of theirs runs or is charged on the server).

        A row is sent again as the catalog has it now (:attr:`catalog`): its record takes
        those values, so the journal, manifest and report show what is sent.
        """
        rows = list(rows)
        with self._transaction():
            # A POST that created nothing was answered (or never went out) by now.
            self._answered(rows, time.time())
            self._db.executemany(
                "UPDATE rows SET state = ?, prediction_id = NULL, outputs = '[]', files = '[]', "
                "error_name = NULL, error_message = ?, cancel_requested = 0, sent_at = NULL, "
                "submitted_at = NULL, finished_at = NULL WHERE row = ?",
                [(State.PENDING, note, row) for row in rows],
            )
            current = [(row, self.catalog[row]) for row in rows if row in self.catalog]
            self._db.executemany(
                "UPDATE rows SET line = ?, key = ?, label = ?, inputs = ?, asks = ? WHERE row = ?",
                [
                    (c.line, c.key, c.label, canonical_json(c.inputs), c.asks or None, row)
                    for row, c in current
                    if c.ok
                ],
            )

    @writes
    def canceled(self, rows: Iterable[int], note: str) -> None:
        """These rows' predictions were canceled by a stop (a re-run sends them again)."""
        with self._transaction():
            self._db.executemany(
                "UPDATE rows SET state = ?, error_name = 'Canceled', error_message = ?, "
                "finished_at = ? WHERE row = ?",
                [(State.CANCELED, note, time.time(), row) for row in rows],
            )

    @writes
    def request_cancel(self, rows: Iterable[int]) -> None:
        """A stop is about to send these submitted rows' predictions a cancel (written
        first: :func:`~fashn_async.bulk._reconcile.settle` records ``canceled`` only the
        rows so marked)."""
        with self._transaction():
            self._db.executemany(
                "UPDATE rows SET cancel_requested = 1 WHERE row = ?", [(row,) for row in rows]
            )

    def _answered(self, rows: Iterable[int], at: float) -> None:
        """Date the answer to each row's last POST, unless one is dated already (a
        restart dates a send by its answer: the server counted it by then)."""
        self._db.executemany(
            "UPDATE sends SET answered = coalesce(answered, ?) "
            "WHERE rowid = (SELECT max(rowid) FROM sends WHERE row = ?)",
            [(at, row) for row in rows],
        )

    @writes
    def begin_run(self) -> int:
        """Record that a run starts (forgetting sends older than :data:`SENDS_KEPT`, and
        cancels an earlier run asked for and never settled: killed mid-stop, it says
        nothing of this run's stop); returns its id."""
        now = time.time()
        with self._transaction():
            self._db.execute("DELETE FROM sends WHERE at < ?", (now - SENDS_KEPT,))
            self._db.execute(
                "UPDATE rows SET cancel_requested = 0 WHERE cancel_requested AND state = ?",
                (State.SUBMITTED,),
            )
            cursor = self._db.execute("INSERT INTO runs (started_at) VALUES (?)", (now,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @writes
    def end_run(self, run: int, outcome: str) -> None:
        """Record how a run ended."""
        self._db.execute(
            "UPDATE runs SET ended_at = ?, outcome = ? WHERE id = ?", (time.time(), outcome, run)
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _add_asks(db: sqlite3.Connection) -> None:
    """Give a journal written before rows kept what they ask for the column (empty: such
    a row is known by its identity only)."""
    if "asks" not in {name for _, name, *_ in db.execute("PRAGMA table_info(rows)")}:
        db.execute("ALTER TABLE rows ADD COLUMN asks TEXT")


def _add_answers(db: sqlite3.Connection) -> None:
    """Give a journal written before sends were dated by their answers the column (its
    sends have none: a restart dates them as unanswered)."""
    columns = {name for _, name, *_ in db.execute("PRAGMA table_info(sends)")}
    if "answered" not in columns:
        db.execute("ALTER TABLE sends ADD COLUMN answered REAL")
