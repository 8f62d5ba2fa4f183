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
(:attr:`Journal.edits`). A row sent again (canceled, ``--retry-failed``,
``--resend-uncertain``) is sent as the catalog has it now, and its record takes those
values (:meth:`Journal.reset`): the journal always holds what was last sent. What
decides every request (base URL, model, output format) must not change: a run with other
settings under the same journal is refused, with the reason.

A write that fails (a full or broken disk) raises :class:`JournalWriteError`. The folder
keeps a small reserve file (``.journal.reserve``) that :meth:`Journal.release_reserve`
deletes, so that a job stopped by a full disk still has room to record its stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

from fashn_async._atomic import write_atomically
from fashn_async._sources import in_worker
from fashn_async.bulk._catalog import CatalogRow, identity_of, unique_identities
from fashn_async.bulk._rows import (
    JournalBusyError,
    JournalMismatchError,
    JournalWriteError,
    RowRecord,
    State,
    disk_problem,
    record_of,
    writes,
)
from fashn_async.errors import ConfigurationError

__all__ = [
    "Journal",
    "JournalBusyError",
    "JournalMismatchError",
    "JournalWriteError",
    "RowRecord",
    "State",
]

JOURNAL_NAME: Final = "journal.sqlite3"
LOCK_NAME: Final = ".journal.lock"
RESERVE_NAME: Final = ".journal.reserve"
#: Bytes kept free for the journal: enough for a stop to record every row's state.
RESERVE_BYTES: Final = 256 * 1024
SCHEMA_VERSION: Final = "2"
#: Journal settings that must be equal for a run to resume, with what to call them.
CHECKED: Final = {
    "base_url": "the API address (--base-url)",
    "model_name": "the model (--model-name)",
    "output_format": "the output format (--output-format)",
}


_KEPT = (
    "the journal keeps the values it was sent with; give the new version another id (or a "
    "new --out folder) to send it"
)
#: What happens to an edited row already sent but not done (see :meth:`Journal.reset`).
_AFTER_EDIT: Final = {
    State.CANCELED: "the journal keeps the values it was sent with until it is sent again "
    "(its prediction found canceled), then the new ones are sent and recorded",
    State.FAILED: "the journal keeps the values it was sent with; --retry-failed sends the "
    "new ones and records them",
    State.UNCERTAIN: "the journal keeps the values it was sent with; --resend-uncertain sends "
    "the new ones and records them",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS rows (
    row INTEGER PRIMARY KEY,
    line INTEGER NOT NULL,
    key TEXT NOT NULL,
    identity TEXT NOT NULL DEFAULT '',
    position INTEGER,
    label TEXT,
    inputs TEXT NOT NULL,
    state TEXT NOT NULL,
    prediction_id TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    files TEXT NOT NULL DEFAULT '[]',
    error_name TEXT,
    error_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    sends INTEGER NOT NULL DEFAULT 0,
    sent_at REAL,
    submitted_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, outcome TEXT
);
"""
_COLUMNS = (
    "row, line, key, identity, position, label, inputs, state, prediction_id, outputs, "
    "files, error_name, error_message, cancel_requested, sends, sent_at, submitted_at, finished_at"
)


class Journal:
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

    def __init__(self, path: Path, connection: sqlite3.Connection, lock: IO[str] | None) -> None:
        self.path = path
        self.guard = threading.Lock()
        self._db = connection
        self._lock = lock
        self.catalog: dict[int, CatalogRow] = {}
        self.edits: list[str] = []

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls, directory: Path, *, meta: Mapping[str, str | None], rows: Sequence[CatalogRow]
    ) -> Journal:
        """Open the folder's journal, or create it with ``rows`` as ``pending``/``invalid``.

        Raises:
            JournalBusyError: another job holds the folder.
            JournalMismatchError: the journal was made for another catalog or API.
        """
        try:
            return cls._open(directory, meta, rows)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigurationError(
                f"cannot write to {directory}: {disk_problem(exc)}; give --out a folder "
                "this user can write to"
            ) from None

    @classmethod
    def _open(
        cls, directory: Path, meta: Mapping[str, str | None], rows: Sequence[CatalogRow]
    ) -> Journal:
        if directory.exists() and not directory.is_dir():
            raise ConfigurationError(f"{directory} exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        lock = _lock(directory)
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
                db.executescript(_SCHEMA)
                if known:
                    journal._check(known, meta)
                    journal._sync(rows)
                else:
                    journal._create(meta, rows)
                _reserve(directory)
            except BaseException:
                db.close()
                raise
        except BaseException:
            lock.close()
            raise
        return journal

    def release_reserve(self) -> bool:
        """Free the reserve file's space for the journal; False when there was none."""
        try:
            (self.path.parent / RESERVE_NAME).unlink()
        except OSError:
            return False
        return True

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

    def _known(self) -> dict[str, str | None]:
        """The meta table of an existing journal (migrated to this schema), else {}."""
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master")}
        if "meta" not in tables:
            return {}
        known = self.meta()
        if known.get("schema") == "1":
            self._migrate_from_1()
            known = self.meta()
        return known

    def _migrate_from_1(self) -> None:
        """Schema 1 knew rows by number only: give each its identity and place."""
        with self._transaction():
            self._db.execute("ALTER TABLE rows ADD COLUMN identity TEXT NOT NULL DEFAULT ''")
            self._db.execute("ALTER TABLE rows ADD COLUMN position INTEGER")
            rows = self._db.execute("SELECT row, inputs FROM rows ORDER BY row").fetchall()
            identities = unique_identities([identity_of(json.loads(i)) for _, i in rows])
            self._db.executemany(
                "UPDATE rows SET identity = ?, position = ? WHERE row = ?",
                [(identity, row, row) for identity, (row, _) in zip(identities, rows, strict=True)],
            )
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))

    def _create(self, meta: Mapping[str, str | None], rows: Sequence[CatalogRow]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT INTO meta VALUES (?, ?)", [("schema", SCHEMA_VERSION), *meta.items()]
            )
            self._insert(rows, start=1)
        self.catalog = dict(enumerate(rows, start=1))

    def _insert(self, rows: Sequence[CatalogRow], start: int) -> None:
        self._db.executemany(
            "INSERT INTO rows (row, line, key, identity, position, label, inputs, state, "
            "error_name, error_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    number,
                    r.line,
                    r.key,
                    r.identity,
                    r.row,
                    r.label,
                    _json(r.inputs),
                    State.PENDING if r.ok else State.INVALID,
                    None if r.ok else "InvalidRow",
                    None if r.ok else _at_line(r),
                )
                for number, r in enumerate(rows, start=start)
            ],
        )

    def _sync(self, rows: Sequence[CatalogRow]) -> None:
        """Match the catalog to the journal by identity (see the module docstring)."""
        # Identities are unique in a catalog (unique_identities); a journal written before
        # they were may hold one twice: each record is matched at most once all the same.
        known: dict[str, list[RowRecord]] = {}
        for each in self.records():
            known.setdefault(each.identity, []).append(each)
        fresh: list[CatalogRow] = []
        updates: list[tuple[Any, ...]] = []
        places: list[tuple[int, int, int]] = []
        for current in rows:
            matches = known.get(current.identity)
            record = matches.pop(0) if matches else None
            if record is None:
                fresh.append(current)
                continue
            self.catalog[record.row] = current
            if record.state in State.UNSENT:
                updates.append(
                    (
                        current.line, current.key, current.row, current.label,
                        _json(current.inputs), State.PENDING if current.ok else State.INVALID,
                        None if current.ok else "InvalidRow",
                        None if current.ok else _at_line(current), record.row,
                    )
                )  # fmt: skip
                continue
            places.append((current.line, current.row, record.row))
            if _json(current.inputs) != _json(record.inputs):
                self.edits.append(
                    f"line {current.line}{_named(current.label)} changed after it was sent "
                    f"({record.state}): {_after_edit(record.state, current)}"
                )
        gone = [record for matches in known.values() for record in matches]
        for record in gone:
            if record.state not in State.UNSENT:
                self.edits.append(
                    f"{_gone_name(record)} is no longer in the catalog; it was already sent "
                    f"({record.state}): its record is kept"
                )
        with self._transaction():
            self._db.executemany(
                "UPDATE rows SET line = ?, key = ?, position = ?, label = ?, inputs = ?, "
                "state = ?, error_name = ?, error_message = ? WHERE row = ?",
                updates,
            )
            self._db.executemany("UPDATE rows SET line = ?, position = ? WHERE row = ?", places)
            self._db.executemany(
                "DELETE FROM rows WHERE row = ?",
                [(r.row,) for r in gone if r.state in State.UNSENT],
            )
            self._db.executemany(
                "UPDATE rows SET position = NULL WHERE row = ?",
                [(r.row,) for r in gone if r.state not in State.UNSENT],
            )
            start = 1 + (self._db.execute("SELECT max(row) FROM rows").fetchone()[0] or 0)
            self._insert(fresh, start=start)
        self.catalog.update(dict(enumerate(fresh, start=start)))

    def _check(self, known: dict[str, str | None], meta: Mapping[str, str | None]) -> None:
        if known.get("schema") != SCHEMA_VERSION:
            raise JournalMismatchError(
                f"{self.path} was written by another version of fashn-async "
                f"(journal schema {known.get('schema')!r}); use a new --out folder"
            )
        for name, what in CHECKED.items():
            if name in meta and known.get(name) != meta[name]:
                was, now = known.get(name), meta[name]
                raise JournalMismatchError(
                    f"{what} changed since this job started: {self.path} has {was!r}, this "
                    f"run has {now!r}. Prediction ids belong to one API and one setting; "
                    "run with the same options to finish that job, or use a new --out folder."
                )
        with self._transaction():  # the catalog's path and hash: for information only
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, v) for k, v in meta.items() if k not in CHECKED],
            )

    # -- reading -------------------------------------------------------------------

    def meta(self) -> dict[str, str | None]:
        """The job's settings, as written when it was created."""
        with self.guard:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def records(self) -> list[RowRecord]:
        """Every row, in row order."""
        query = f"SELECT {_COLUMNS} FROM rows ORDER BY position IS NULL, position, row"  # noqa: S608 - constant
        with self.guard:
            return [record_of(values) for values in self._db.execute(query).fetchall()]

    def counts(self) -> dict[str, int]:
        """Rows per state."""
        counts = dict.fromkeys(State.ALL, 0)
        with self.guard:
            counts.update(self._db.execute("SELECT state, count(*) FROM rows GROUP BY state"))
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
        self._db.execute(
            "UPDATE rows SET state = ?, sends = sends + 1, sent_at = ?, "
            "error_name = NULL, error_message = NULL WHERE row = ?",
            (State.SUBMITTING, time.time(), row),
        )

    async def sending_off_loop(self, row: int) -> None:
        """:meth:`sending` in a worker thread: its fsync never stalls the event loop.

        Once started, the write completes even if the caller is canceled meanwhile
        (the row is then ``submitting``; the caller puts it back).

        Raises:
            JournalWriteError: the write failed; nothing changed.
        """
        await in_worker(self.sending, row)

    @writes
    def submitted(self, row: int, prediction_id: str, *, canceling: bool = False) -> None:
        """The server answered with the row's prediction id (``canceling``: too late,
        the job is stopping and cancels it)."""
        self._db.execute(
            "UPDATE rows SET state = ?, prediction_id = ?, submitted_at = ?, "
            "cancel_requested = ? WHERE row = ?",
            (State.SUBMITTED, prediction_id, time.time(), int(canceling), row),
        )

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
            self._db.executemany(
                "UPDATE rows SET state = ?, prediction_id = NULL, outputs = '[]', files = '[]', "
                "error_name = NULL, error_message = ?, cancel_requested = 0, sent_at = NULL, "
                "submitted_at = NULL, finished_at = NULL WHERE row = ?",
                [(State.PENDING, note, row) for row in rows],
            )
            current = [(row, self.catalog[row]) for row in rows if row in self.catalog]
            self._db.executemany(
                "UPDATE rows SET line = ?, key = ?, label = ?, inputs = ? WHERE row = ?",
                [(c.line, c.key, c.label, _json(c.inputs), row) for row, c in current if c.ok],
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
        """These submitted rows were canceled on the server when the job was stopped."""
        with self._transaction():
            self._db.executemany(
                "UPDATE rows SET cancel_requested = 1 WHERE row = ?", [(row,) for row in rows]
            )

    @writes
    def begin_run(self) -> int:
        """Record that a run starts; returns its id."""
        cursor = self._db.execute("INSERT INTO runs (started_at) VALUES (?)", (time.time(),))
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


def _after_edit(state: str, current: CatalogRow) -> str:
    """What becomes of a row edited after it was sent (see :meth:`Journal.reset`)."""
    if state in _AFTER_EDIT and not current.ok:
        return (
            "the journal keeps the values it was sent with; the new ones are not sent: "
            f"{current.error}"
        )
    return _AFTER_EDIT.get(state, _KEPT)


def _at_line(row: CatalogRow) -> str:
    return f"line {row.line}: {row.error}"


def _gone_name(record: RowRecord) -> str:
    """A row no longer in the catalog, by what a person can find: its id, else the line
    it was on when last read (its place in the file is gone)."""
    if record.label:
        return f"the row with id {record.label!r} (line {record.line} when last read)"
    return f"the row at line {record.line} when last read"


def _named(label: str | None) -> str:
    return f", id {label!r}" if label else ""


def _json(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), ensure_ascii=False, default=str, sort_keys=True)


def _reserve(directory: Path) -> None:
    """Keep RESERVE_BYTES of the disk for the journal (see the module docstring)."""
    path = directory / RESERVE_NAME
    if path.is_file() and path.stat().st_size == RESERVE_BYTES:
        return
    write_atomically(path, b"\0" * RESERVE_BYTES)


def _lock(directory: Path) -> IO[str]:
    """Hold the folder for this process (released by the kernel on any exit, kill -9 too)."""
    handle = (directory / LOCK_NAME).open("a+", encoding="utf-8")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, no check
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise JournalBusyError(
            f"another fashn-async job (pid {holder}) is running on {directory}; "
            "wait for it to end, or stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
