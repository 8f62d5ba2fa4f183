"""The job's journal: a SQLite file in the output folder that survives any crash.

Each row moves ``pending -> submitting -> submitted (with its id) -> completed (outputs
known) -> done (files on disk)``, or ends ``failed``, ``invalid`` or ``uncertain``. Every
step is one short transaction, written (WAL, ``synchronous=FULL``) before the network
step it announces and after the one it records, so a ``kill -9`` anywhere leaves a state
a re-run can act on without paying twice:

- ``submitting`` means the POST may have landed: the next run calls the row
  ``uncertain`` and re-sends it only when told to (``--resend-uncertain``);
- ``submitted`` rows are polled by their id, never re-sent;
- ``completed`` rows are downloaded again (files are written whole or not at all).

The journal remembers the catalog's SHA-256 and what decides the requests (base URL,
model): a run with another file under the same journal is refused, with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

import attrs

from fashn_async.bulk._catalog import CatalogRow
from fashn_async.errors import ConfigurationError

__all__ = ["Journal", "JournalBusyError", "JournalMismatchError", "RowRecord", "State"]

JOURNAL_NAME: Final = "journal.sqlite3"
SCHEMA_VERSION: Final = "1"
#: Journal settings that must be equal for a run to resume, with what to call them.
CHECKED: Final = {
    "catalog_sha256": "the catalog's contents (SHA-256)",
    "base_url": "the API address (--base-url)",
    "model_name": "the model (--model-name)",
    "output_format": "the output format (--output-format)",
}


class State:
    """A row's state in the journal (and its ``status`` in the manifest)."""

    PENDING: Final = "pending"
    SUBMITTING: Final = "submitting"
    SUBMITTED: Final = "submitted"
    COMPLETED: Final = "completed"
    DONE: Final = "done"
    FAILED: Final = "failed"
    INVALID: Final = "invalid"
    UNCERTAIN: Final = "uncertain"

    ALL: Final = (
        PENDING, SUBMITTING, SUBMITTED, COMPLETED, DONE, FAILED, INVALID, UNCERTAIN
    )  # fmt: skip
    #: Nothing more happens to these without a flag or a fix.
    FINAL: Final = frozenset({DONE, FAILED, INVALID, UNCERTAIN})


class JournalMismatchError(ConfigurationError):
    """The journal in the output folder belongs to another catalog or API."""


class JournalBusyError(ConfigurationError):
    """Another job is running on the same output folder."""


@attrs.frozen(kw_only=True)
class RowRecord:
    """A row as the journal knows it."""

    row: int
    line: int
    key: str
    label: str | None
    inputs: dict[str, Any]
    state: str
    prediction_id: str | None
    outputs: list[str]
    files: list[str]
    error_name: str | None
    error_message: str | None
    cancel_requested: bool
    sends: int
    sent_at: float | None
    submitted_at: float | None
    finished_at: float | None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS rows (
    row INTEGER PRIMARY KEY,
    line INTEGER NOT NULL,
    key TEXT NOT NULL,
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
    "row, line, key, label, inputs, state, prediction_id, outputs, files, error_name, "
    "error_message, cancel_requested, sends, sent_at, submitted_at, finished_at"
)


class Journal:
    """The durable state of one bulk job; open it with :meth:`open`.

    Methods write at once (one transaction each, fsynced) and are meant to be called on
    the event loop from the batch's callbacks: the write must be on disk before the
    request it announces goes out. Each takes well under a millisecond to a few.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection, lock: IO[str] | None) -> None:
        self.path = path
        self._db = connection
        self._lock = lock

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
        if directory.exists() and not directory.is_dir():
            raise ConfigurationError(f"{directory} exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        lock = _lock(directory)
        path = directory / JOURNAL_NAME
        try:
            db = sqlite3.connect(path, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA busy_timeout=10000")
                db.executescript(_SCHEMA)
                journal = cls(path, db, lock)
                known = journal.meta()
                if known:
                    journal._check(known, meta, len(rows))
                else:
                    journal._create(meta, rows)
            except BaseException:
                db.close()
                raise
        except BaseException:
            lock.close()
            raise
        return journal

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

    def _create(self, meta: Mapping[str, str | None], rows: Sequence[CatalogRow]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("schema", SCHEMA_VERSION), ("rows", str(len(rows))), *meta.items()],
            )
            self._db.executemany(
                "INSERT INTO rows (row, line, key, label, inputs, state, error_name, "
                "error_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.row,
                        r.line,
                        r.key,
                        r.label,
                        json.dumps(dict(r.inputs), ensure_ascii=False, default=str),
                        State.PENDING if r.ok else State.INVALID,
                        None if r.ok else "InvalidRow",
                        None if r.ok else _at_line(r),
                    )
                    for r in rows
                ],
            )

    def _check(self, known: dict[str, str | None], meta: Mapping[str, str | None], n: int) -> None:
        if known.get("schema") != SCHEMA_VERSION:
            raise JournalMismatchError(
                f"{self.path} was written by another version of fashn-async "
                f"(journal schema {known.get('schema')!r}); use a new --out folder"
            )
        for name, what in CHECKED.items():
            if name in meta and known.get(name) != meta[name]:
                was, now = known.get(name), meta[name]
                if name == "catalog_sha256":
                    raise JournalMismatchError(
                        f"the catalog changed since this job started: {self.path} was made "
                        f"for {known.get('catalog')} with SHA-256 {str(was)[:12]}..., the "
                        f"file given now has {str(now)[:12]}.... Rows are tracked by their "
                        "number, so a changed file cannot resume safely. Put the original "
                        "file back to finish that job, or use a new --out folder for this one."
                    )
                raise JournalMismatchError(
                    f"{what} changed since this job started: {self.path} has {was!r}, this "
                    f"run has {now!r}. Prediction ids belong to one API and one setting; "
                    "run with the same options to finish that job, or use a new --out folder."
                )
        if known.get("rows") != str(n):  # same bytes, same rows: only a bug gets here
            raise JournalMismatchError(f"{self.path} lists {known.get('rows')} rows, not {n}")

    # -- reading -------------------------------------------------------------------

    def meta(self) -> dict[str, str | None]:
        """The job's settings, as written when it was created."""
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def records(self) -> list[RowRecord]:
        """Every row, in row order."""
        cursor = self._db.execute(f"SELECT {_COLUMNS} FROM rows ORDER BY row")  # noqa: S608 - constant
        return [_record(values) for values in cursor]

    def counts(self) -> dict[str, int]:
        """Rows per state."""
        counts = dict.fromkeys(State.ALL, 0)
        counts.update(self._db.execute("SELECT state, count(*) FROM rows GROUP BY state"))
        return counts

    def runs(self) -> list[tuple[float, float | None, str | None]]:
        """Every run of the job: start, end and outcome (None: it was killed)."""
        query = "SELECT started_at, ended_at, outcome FROM runs ORDER BY id"
        return [(start, end, outcome) for start, end, outcome in self._db.execute(query)]

    # -- state changes (each one transaction) --------------------------------------

    def sending(self, row: int) -> None:
        """The row's POST is about to go out: from now on it may exist on the server."""
        self._db.execute(
            "UPDATE rows SET state = ?, sends = sends + 1, sent_at = ?, "
            "error_name = NULL, error_message = NULL WHERE row = ?",
            (State.SUBMITTING, time.time(), row),
        )

    def submitted(self, row: int, prediction_id: str, *, cancelling: bool = False) -> None:
        """The server answered with the row's prediction id (``cancelling``: too late,
        the job is stopping and cancels it)."""
        self._db.execute(
            "UPDATE rows SET state = ?, prediction_id = ?, submitted_at = ?, "
            "cancel_requested = ? WHERE row = ?",
            (State.SUBMITTED, prediction_id, time.time(), int(cancelling), row),
        )

    def completed(self, row: int, prediction_id: str, outputs: Sequence[str]) -> None:
        """The prediction completed: its outputs are known, not yet on disk."""
        self._db.execute(
            "UPDATE rows SET state = ?, prediction_id = ?, outputs = ?, finished_at = "
            "coalesce(finished_at, ?), cancel_requested = 0, error_name = NULL, "
            "error_message = NULL WHERE row = ?",
            (State.COMPLETED, prediction_id, json.dumps(list(outputs)), time.time(), row),
        )

    def saved(self, row: int, files: Sequence[str]) -> None:
        """Every output of the row is on disk."""
        self._db.execute(
            "UPDATE rows SET state = ?, files = ?, error_name = NULL, error_message = NULL "
            "WHERE row = ?",
            (State.DONE, json.dumps(list(files)), row),
        )

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

    def note_error(self, row: int, name: str | None, message: str | None) -> None:
        """Keep the row's state, with this error (a download that failed, say)."""
        self._db.execute(
            "UPDATE rows SET error_name = ?, error_message = ? WHERE row = ?", (name, message, row)
        )

    def reset(self, rows: Iterable[int], note: str | None = None) -> None:
        """Make rows ``pending`` again (nothing of theirs runs or is charged on the server)."""
        with self._transaction():
            self._db.executemany(
                "UPDATE rows SET state = ?, prediction_id = NULL, outputs = '[]', files = '[]', "
                "error_name = NULL, error_message = ?, cancel_requested = 0, sent_at = NULL, "
                "submitted_at = NULL, finished_at = NULL WHERE row = ?",
                [(State.PENDING, note, row) for row in rows],
            )

    def request_cancel(self, rows: Iterable[int]) -> None:
        """These submitted rows were cancelled on the server when the job was stopped."""
        with self._transaction():
            self._db.executemany(
                "UPDATE rows SET cancel_requested = 1 WHERE row = ?", [(row,) for row in rows]
            )

    def begin_run(self) -> int:
        """Record that a run starts; returns its id."""
        cursor = self._db.execute("INSERT INTO runs (started_at) VALUES (?)", (time.time(),))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

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


def _at_line(row: CatalogRow) -> str:
    return f"line {row.line}: {row.error}"


def _record(values: tuple[Any, ...]) -> RowRecord:
    (row, line, key, label, inputs, state, pid, outputs, files, name, message, cancel) = values[:12]
    sends, sent_at, submitted_at, finished_at = values[12:]
    return RowRecord(
        row=row,
        line=line,
        key=key,
        label=label,
        inputs=json.loads(inputs),
        state=state,
        prediction_id=pid,
        outputs=json.loads(outputs),
        files=json.loads(files),
        error_name=name,
        error_message=message,
        cancel_requested=bool(cancel),
        sends=sends,
        sent_at=sent_at,
        submitted_at=submitted_at,
        finished_at=finished_at,
    )


def _lock(directory: Path) -> IO[str]:
    """Hold the folder for this process (released by the kernel on any exit, kill -9 too)."""
    handle = (directory / ".journal.lock").open("a+", encoding="utf-8")
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
