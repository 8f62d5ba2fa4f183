"""What opening a journal does to it: migrate an old schema, create it for a catalog,
or match an existing one to the catalog as it is now and check the job's settings.

A base of :class:`~fashn_async.bulk._journal.Journal`, which owns the state named here.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fashn_async.bulk._catalog import CatalogRow
from fashn_async.bulk._edits import CHECKED, at_line, canonical_json, plan_sync, settings_problem
from fashn_async.bulk._identity import identity_of, unique_identities
from fashn_async.bulk._rows import (
    SCHEMA_VERSION,
    JournalMismatchError,
    JournalWriteError,
    State,
    disk_problem,
    disk_remedy,
)
from fashn_async.errors import ConfigurationError

if TYPE_CHECKING:
    from fashn_async.bulk._rows import RowRecord

__all__ = ["JournalOpening", "opening_error"]


class JournalOpening:
    """The opening steps of a journal (see the module docstring)."""

    path: Path
    catalog: dict[int, CatalogRow]
    edits: list[str]
    _db: sqlite3.Connection

    def meta(self) -> dict[str, str | None]:
        raise NotImplementedError

    def records(self) -> list[RowRecord]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

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
            "error_name, error_message, asks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    number,
                    r.line,
                    r.key,
                    r.identity,
                    r.row,
                    r.label,
                    canonical_json(r.inputs),
                    State.PENDING if r.ok else State.INVALID,
                    None if r.ok else "InvalidRow",
                    None if r.ok else at_line(r),
                    r.asks or None,
                )
                for number, r in enumerate(rows, start=start)
            ],
        )

    def _sync(self, rows: Sequence[CatalogRow]) -> None:
        """Match the catalog to the journal by identity and by what rows ask for (see
        :func:`plan_sync`)."""
        plan = plan_sync(self.records(), rows)
        self.catalog.update(plan.matched)
        self.edits += plan.edits
        with self._transaction():
            self._db.executemany(
                "UPDATE rows SET line = ?, key = ?, position = ?, label = ?, inputs = ?, "
                "state = ?, error_name = ?, error_message = ?, asks = ? WHERE row = ?",
                plan.updates,
            )
            self._db.executemany(
                "UPDATE rows SET line = ?, position = ? WHERE row = ?", plan.places
            )
            self._db.executemany("DELETE FROM rows WHERE row = ?", plan.deletes)
            self._db.executemany("UPDATE rows SET position = NULL WHERE row = ?", plan.kept)
            self._db.executemany(
                "UPDATE rows SET identity = ?, label = ? WHERE row = ?", plan.renamed
            )
            start = 1 + (self._db.execute("SELECT max(row) FROM rows").fetchone()[0] or 0)
            self._insert(plan.fresh, start=start)
        self.catalog.update(dict(enumerate(plan.fresh, start=start)))

    def _check(self, known: dict[str, str | None], meta: Mapping[str, str | None]) -> None:
        """Refuse settings that differ from the job's (the API address, the model, the
        output format), unless the job never sent anything: then nothing on any server
        belongs to it (a mistyped --base-url or a wrong key), and it takes the new ones."""
        problem = settings_problem(self.path, known, meta)
        if problem is not None and self._ever_sent():
            raise JournalMismatchError(problem)
        fresh = problem is not None  # never sent: every setting is the new one's
        with self._transaction():  # the catalog's path and hash: for information only
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, v) for k, v in meta.items() if fresh or k not in CHECKED],
            )

    def _ever_sent(self) -> bool:
        """Whether any row was ever sent (a POST recorded, or a prediction id known)."""
        row = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM rows WHERE sends > 0 OR prediction_id IS NOT NULL)"
        ).fetchone()
        return bool(row[0])


def opening_error(exc: BaseException, path: Path, *, resumable: bool) -> ConfigurationError:
    """Why the journal at ``path`` cannot be opened (``exc``), and what to do: a folder
    holding one is never traded for another (:func:`disk_remedy`), and a damaged one is
    kept, its rows maybe paid for."""
    if isinstance(exc, JournalWriteError):  # taking back the ids the last run kept aside
        return ConfigurationError(
            f"{exc.message}; {disk_remedy('the disk is full', resumable=True)}"
        )
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return ConfigurationError(
            f"the journal {path} is damaged ({exc}); its rows may already be paid for: keep "
            "the folder, and start over only in a new --out folder (or move the journal "
            "away) once you have checked what was sent"
        )
    problem = disk_problem(exc, path.parent)
    return ConfigurationError(
        f"cannot write to {path.parent}: {problem}; {disk_remedy(problem, resumable=resumable)}"
    )
