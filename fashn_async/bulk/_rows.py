"""The journal's vocabulary: row states, its tables, a row's record, and its errors."""

from __future__ import annotations

import errno
import functools
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, ParamSpec, Protocol, TypeVar

import attrs

from fashn_async.errors import ConfigurationError, FashnError

__all__ = [
    "JournalBusyError",
    "JournalMismatchError",
    "JournalWriteError",
    "COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "RowRecord",
    "State",
    "disk_failure",
    "disk_problem",
    "disk_remedy",
    "record_of",
    "writes",
]


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
    CANCELED: Final = "canceled"

    ALL: Final = (
        PENDING, SUBMITTING, SUBMITTED, COMPLETED, DONE, CANCELED, FAILED, INVALID, UNCERTAIN
    )  # fmt: skip
    #: Nothing more happens to these without a flag or a fix.
    FINAL: Final = frozenset({DONE, FAILED, INVALID, UNCERTAIN})
    #: Not done, and nothing of theirs runs: the report's "Not done" table.
    NOT_DONE: Final = (CANCELED, FAILED, INVALID, UNCERTAIN)
    #: Never sent: a catalog edit may change or remove them.
    UNSENT: Final = frozenset({PENDING, INVALID})


class JournalMismatchError(ConfigurationError):
    """The journal in the output folder belongs to another catalog or API."""


class JournalBusyError(ConfigurationError):
    """Another job is running on the same output folder."""


class JournalWriteError(FashnError):
    """The journal could not be written (a full, read-only or failing disk)."""

    default_name = "JournalWriteError"


_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Guarded(Protocol):
    @property
    def guard(self) -> Any: ...


def writes(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """A journal write, made under the journal's ``guard``: a disk or database failure
    becomes :class:`JournalWriteError`."""

    @functools.wraps(method)
    def write(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        journal: _Guarded = args[0]  # type: ignore[assignment]  # the method's self
        try:
            with journal.guard:
                return method(*args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            where = getattr(journal, "path", None)
            raise JournalWriteError(
                f"cannot write the journal{f' {where}' if where else ''}: {disk_problem(exc)}"
            ) from None

    return write


#: The errors of a disk or folder that cannot take more (full, quota, read-only, failing,
#: or made unwritable while the job runs: permission taken away, an immutable folder).
DISK_ERRNOS: Final = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}
)


def disk_failure(error: BaseException) -> str | None:
    """What is wrong with the disk when ``error`` (or what caused it) is a disk failure
    (:data:`DISK_ERRNOS`), in :func:`disk_problem`'s words; else None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_ERRNOS:
            return disk_problem(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def disk_problem(exc: BaseException, folder: Path | None = None) -> str:
    """What a disk or SQLite failure means to a person. ``folder``: where it happened; a
    disk with no room left there is called full whatever the error said (SQLite reports
    a full disk as ``disk I/O error`` at times)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (no space left on device, or the quota is used up)"
    if "full" in str(exc) and not isinstance(exc, OSError):
        return "the disk is full (database or disk is full)"
    if (isinstance(exc, OSError) and exc.errno == errno.EROFS) or "read-only" in str(exc):
        return "the file system is read-only"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
        return "it may no longer be written (permission denied)"
    told = isinstance(exc, OSError) and exc.errno not in (None, errno.EIO)  # (its own words)
    if folder is not None and not told and _no_room(folder):
        return f"the disk is full ({_words(exc)})"
    return _words(exc)


def disk_remedy(problem: str, *, resumable: bool) -> str:
    """What to do about a folder that cannot be written, given :func:`disk_problem`'s
    words. A folder holding a journal (``resumable``) is never traded for another: a new
    ``--out`` starts a new journal, which would send every row again, and pay for it."""
    full = problem.startswith("the disk is full")
    if resumable:
        fix = "free some space" if full else "fix that"
        return (
            f"{fix}, then run the same command again with this --out (its journal knows "
            "what was sent and paid for; another folder would pay for every row again)"
        )
    if full:
        return "free some space (or give --out a folder on another disk)"
    return "give --out a folder this user can write to"


def _words(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _no_room(folder: Path) -> bool:
    """Whether the disk of ``folder`` (or of its nearest existing parent) has under 1 MiB free."""
    for place in (folder, *folder.parents):
        try:
            return shutil.disk_usage(place).free < 1 << 20
        except OSError:
            continue
    return False


SCHEMA_VERSION: Final = "2"
SCHEMA = """
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
    finished_at REAL,
    asks TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, outcome TEXT
);
CREATE TABLE IF NOT EXISTS sends (row INTEGER NOT NULL, at REAL NOT NULL, answered REAL);
"""
COLUMNS = (
    "row, line, key, identity, position, label, inputs, state, prediction_id, outputs, "
    "files, error_name, error_message, cancel_requested, sends, sent_at, submitted_at, "
    "finished_at, asks"
)


@attrs.frozen(kw_only=True)
class RowRecord:
    """A row as the journal knows it."""

    row: int
    line: int
    key: str
    identity: str
    position: int | None
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
    #: What it asks for (``CatalogRow.asks``) when last sent or read; None in a journal
    #: written before rows kept it.
    asks: str | None = None


def record_of(values: tuple[Any, ...]) -> RowRecord:
    """A row of the ``rows`` table (its columns in :data:`COLUMNS` order) as a record."""
    (row, line, key, identity, position, label, inputs, state, pid, outputs) = values[:10]
    files, name, message, cancel, sends, sent_at, submitted_at, finished_at, asks = values[10:]
    return RowRecord(
        row=row,
        line=line,
        key=key,
        identity=identity,
        position=position,
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
        asks=asks,
    )
