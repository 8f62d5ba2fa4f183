"""A stop that meets a journal write half done: the `submitting` write in its worker
thread, or a disk that refuses the k-th write on. Rows whose POST never went out must
not be `uncertain`, rows sent must not be sent again, and a re-run must finish."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import pytest
from rich.console import Console

from fashn_async import AsyncFashn
from fashn_async.bulk import BulkJob, JobOptions, Journal, load_catalog
from fashn_async.bulk._command import BatchSettings, run_batch
from fashn_async.bulk._folder import RESERVE_NAME
from fashn_async.testing import Emulator
from tests.bulk_support import read_manifest, write_catalog


class _Display:
    """A display that shows nothing."""

    def update(self, counts: object, total: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def _meta(emulator: Emulator) -> dict[str, str | None]:
    return {"base_url": emulator.url, "model_name": None, "output_format": None}


async def _rerun(emulator: Emulator, catalog: Path, out: Path) -> tuple[int, str]:
    buffer = io.StringIO()
    settings = BatchSettings(
        catalog=catalog,
        options=JobOptions(out=out),
        api_key=emulator.api_key,
        base_url=emulator.url,
        display="lines",
        report=False,
    )
    return await run_batch(settings, Console(file=buffer, width=300)), buffer.getvalue()


class _HeldAtTheDoor:
    """The journal's guard, except that the first write from a worker thread (a row's
    `submitting` write: :attr:`row`) waits before taking it until :meth:`let_go`;
    meanwhile it runs ``meanwhile`` on the loop, then lets go."""

    def __init__(self, lock: threading.Lock, meanwhile: Callable[[], Awaitable[None]]) -> None:
        self._lock = lock
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._meanwhile = meanwhile
        self._held: int | None = None  # the held thread, once it came
        self.rows: dict[int, int] = {}  # the row each thread writes
        self.row: int | None = None
        self._go = threading.Event()
        self.written = threading.Event()
        self.done: concurrent.futures.Future[None] | None = None  # of ``meanwhile``

    def __enter__(self) -> None:
        here = threading.get_ident()
        if here != self._loop_thread and self._held is None:
            self._held, self.row = here, self.rows[here]
            self.done = asyncio.run_coroutine_threadsafe(self._run_meanwhile(), self._loop)
            self._go.wait(timeout=30)
        self._lock.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()
        if threading.get_ident() == self._held:
            self.written.set()

    async def _run_meanwhile(self) -> None:
        await self._meanwhile()
        self._go.set()

    def let_go(self) -> None:
        """Let the held write begin, and wait until it is done (from the loop's thread)."""
        if self._held is not None and not self.written.is_set():
            self._go.set()
            self.written.wait(timeout=30)


async def test_a_stop_during_a_submitting_write_leaves_the_row_pending(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Ctrl-C while a row's `submitting` write is in its worker thread, not yet begun:
    its POST never goes out, and the row ends `pending`, not `submitting` or
    `uncertain` (the reset must come after that write); a re-run finishes, each row
    paid once."""
    catalog = write_catalog(tmp_path, 4, models=2)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=_meta(emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            job = BulkJob(client, loaded, journal, JobOptions(out=out), _Display())

            async def meanwhile() -> None:
                job.interrupt()
                # Every task waits: the job for the held write (or, if it did not wait,
                # past the row's reset, which then let the write go).
                await anyio.wait_all_tasks_blocked()

            door = _HeldAtTheDoor(journal.guard, meanwhile)
            reset, sending = journal.reset, journal.sending

            def sending_in(row: int) -> None:
                door.rows[threading.get_ident()] = row
                sending(row)

            def reset_then_let_go(rows: Iterable[int], note: str | None = None) -> None:
                rows = list(rows)
                reset(rows, note)
                if door.row in rows:
                    door.let_go()  # its reset came first: the write lands after it

            journal.guard = door  # type: ignore[assignment]
            journal.sending = sending_in  # type: ignore[method-assign]
            journal.reset = reset_then_let_go  # type: ignore[method-assign]
            summary = await job.run()
            assert door.done is not None
            await asyncio.wrap_future(door.done)
        records = journal.records()
    assert summary.interrupted
    states = {r.state for r in records}
    assert not states & {"submitting", "uncertain"}, [(r.row, r.state) for r in records]
    sent = [r for r in records if r.prediction_id is not None]
    assert len(emulator.report().accepted) == len(sent)  # the held row's POST never went out
    code, printed = await _rerun(emulator, catalog, out)
    assert code == 0, printed
    assert {e["status"] for e in read_manifest(out)} == {"done"}
    report = emulator.report()
    assert report.duplicates == 0
    assert report.credits_used == 4


class _FillingDisk:
    """A journal database on a disk that fills: from its ``full_at``-th write on (a
    write: a transaction, or a statement outside one) it refuses them, as SQLite does
    on a full disk, until the job frees its reserve; reads always work."""

    def __init__(self, real: sqlite3.Connection, reserve: Path, full_at: int) -> None:
        self.real = real
        self.writes = 0
        self._reserve = reserve
        self._full_at = full_at
        self._in_transaction = False

    def execute(self, sql: str, *args: Any) -> object:
        verb = sql.lstrip().split()[0].upper()
        if verb not in ("SELECT", "PRAGMA", "COMMIT", "ROLLBACK") and not self._in_transaction:
            self._refuse_when_full()
        self._in_transaction = (self._in_transaction or verb == "BEGIN") and verb not in (
            "COMMIT",
            "ROLLBACK",
        )
        return self.real.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> object:
        if not self._in_transaction:
            self._refuse_when_full()
        return self.real.executemany(sql, *args)

    def _refuse_when_full(self) -> None:
        self.writes += 1
        if self.writes >= self._full_at and self._reserve.exists():
            raise sqlite3.OperationalError("database or disk is full")

    def close(self) -> None:
        self.real.close()


_CLEAN_RUN_WRITES = 15  # of a clean run of the 3-row catalog below (checked by k = 16)


@pytest.mark.parametrize("full_at", range(1, _CLEAN_RUN_WRITES + 2))
async def test_a_disk_full_at_any_journal_write_loses_nothing_and_pays_once(
    emulator: Emulator, tmp_path: Path, full_at: int
) -> None:
    """The disk fills at the k-th journal write, for every k of a run: the job stops
    with no row `submitting` or `uncertain` (none was sent without the journal knowing
    its id) and nothing charged the journal does not know of; once space returns a
    re-run finishes, each row paid once, only rows canceled by the stop sent again."""
    catalog = write_catalog(tmp_path, 3, models=3)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=_meta(emulator), rows=loaded.rows) as journal:
        real = journal._db
        disk = _FillingDisk(real, out / RESERVE_NAME, full_at)
        journal._db = disk  # type: ignore[assignment]
        try:
            async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
                job = BulkJob(client, loaded, journal, JobOptions(out=out), _Display())
                summary = await job.run()
        finally:
            journal._db = real
        records = journal.records()
    if full_at > _CLEAN_RUN_WRITES:
        assert summary.exit_code == 0
        assert disk.writes == _CLEAN_RUN_WRITES, "a run writes more or less: update the range"
        return
    assert summary.stopped == "disk", summary
    states = {r.row: r.state for r in records}
    assert not set(states.values()) & {"submitting", "uncertain"}, states
    known = {r.prediction_id for r in records if r.prediction_id}
    charged = {p for p, status in emulator.report().statuses.items() if status == "completed"}
    assert charged <= known
    canceled = sum(state == "canceled" for state in states.values())
    code, printed = await _rerun(emulator, catalog, out)
    assert code == 0, printed
    assert {e["status"] for e in read_manifest(out)} == {"done"}
    report = emulator.report()
    assert report.duplicates <= canceled
    assert report.credits_used == 3
