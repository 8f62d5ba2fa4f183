"""A stop that meets a journal write half done: the `submitting` write in its worker
thread, a disk that refuses the k-th write on, or a download still writing. Rows whose
POST never went out must not be `uncertain`, rows sent must not be sent again (nor lose
their prediction id), and a re-run must finish."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest

from fashn_async import AsyncFashn, _outputs
from fashn_async._atomic import overwrite
from fashn_async.bulk import BulkJob, JobOptions, Journal, load_catalog
from fashn_async.bulk._folder import RESERVE_BYTES, RESERVE_NAME
from fashn_async.bulk._rescue import kept
from fashn_async.bulk._rows import JournalWriteError
from fashn_async.bulk._writes import JournalWrites
from fashn_async.testing import Emulator, HttpFault
from tests.bulk_support import (
    MODES,
    FillingDisk,
    HeldAtTheDoor,
    QuietDisplay,
    filling_disk,
    job_meta,
    read_manifest,
    rerun,
    write_catalog,
)


@pytest.mark.parametrize("stop", ["interrupted", "disk"])
async def test_a_stop_during_a_submitting_write_leaves_the_row_pending(
    emulator: Emulator, tmp_path: Path, stop: str
) -> None:
    """Ctrl-C, or another write failing for lack of disk, while a row's `submitting`
    write is in its worker thread, not yet begun: its POST never goes out (nothing more
    is sent once a stop is under way), and the row ends `pending`, not `submitting` or
    `uncertain` (the reset must come after that write); a re-run finishes, each row
    paid once."""
    catalog = write_catalog(tmp_path, 4, models=2)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            job = BulkJob(client, loaded, journal, JobOptions(out=out), QuietDisplay())

            async def meanwhile() -> None:
                if stop == "disk":
                    job._writes.failed(JournalWriteError("the disk is full"))
                else:
                    job.interrupt()
                # Every task waits: the job for the held write (or, if it did not wait,
                # past the row's reset, which then let the write go).
                await anyio.wait_all_tasks_blocked()

            door = HeldAtTheDoor(journal.guard, meanwhile)
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
    assert summary.interrupted if stop == "interrupted" else summary.problem is not None
    states = {r.state for r in records}
    assert not states & {"submitting", "uncertain"}, [(r.row, r.state) for r in records]
    held = next(r for r in records if r.row == door.row)
    assert (held.state, held.prediction_id) == ("pending", None)
    sent = [r for r in records if r.prediction_id is not None]
    assert len(emulator.report().accepted) == len(sent)  # the held row's POST never went out
    # A row sent before the stop and still running is canceled, and the re-run sends it
    # again: a duplicate payload, not a second charge (whether one is still running
    # depends on timing: about 1 run in 25).
    canceled = sum(r.state == "canceled" for r in records)
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    assert {e["status"] for e in read_manifest(out)} == {"done"}
    report = emulator.report()
    assert report.duplicates <= canceled
    assert report.credits_used == 4


#: Journal writes of a clean run of the 3-row catalog below, its POSTs all creating a
#: prediction, or the first 3 answered "not created" (429 or 500) and sent again.
_RUN_WRITES = {"created": 14, "not created first": 20}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("posts", "k"), [(p, k) for p, writes in _RUN_WRITES.items() for k in range(1, writes + 2)]
)
async def test_a_disk_full_at_any_journal_write_loses_nothing_and_pays_once(
    emulator: Emulator, tmp_path: Path, posts: str, k: int, mode: str
) -> None:
    """The disk refuses journal writes from the k-th on (see FillingDisk), for every k
    of a run (and one past it, which checks the count): the job stops, and every
    prediction charged is known to the journal or kept in its reserve (no row was sent
    without its id written somewhere); once space returns a re-run collects each,
    finishes, and pays each row once, only rows canceled by the stop sent again. With
    the first 3 POSTs answered 429 (odd k) or 500 (even k), each row reset to `pending`
    and sent again, no row ends `uncertain`: a reset the journal refused is kept in the
    reserve's head too, and taken back."""
    catalog = write_catalog(tmp_path, 3, models=3)
    out = tmp_path / "out"
    if posts == "not created first":
        emulator.inject(HttpFault("throttle" if k % 2 else "error_5xx", route="run", times=3))
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        with filling_disk(journal, k, mode) as disk:
            async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
                job = BulkJob(client, loaded, journal, JobOptions(out=out), QuietDisplay())
                summary = await job.run()
        records = journal.records()
    if k > _RUN_WRITES[posts]:
        assert summary.exit_code == 0, summary
        assert disk.writes == _RUN_WRITES[posts], "a run writes more or less: update the count"
        return
    assert summary.stopped == "disk", summary
    if posts == "not created first":
        assert not [r for r in records if r.state == "uncertain"], records
    known = {r.prediction_id for r in records if r.prediction_id}
    rescued = {r.row: r.prediction_id for r in kept(out)}
    charged = {p for p, status in emulator.report().statuses.items() if status == "completed"}
    assert charged <= known | {p for p in rescued.values() if p}
    for record in records:  # a row whose POST may have landed has its answer kept
        if record.state in ("submitting", "uncertain"):
            assert record.row in rescued, (record, rescued)
    canceled = sum(r.state == "canceled" for r in records)
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    assert {e["status"] for e in read_manifest(out)} == {"done"}
    report = emulator.report()
    assert report.duplicates <= canceled
    assert report.credits_used == 3
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        known = {r.prediction_id for r in journal.records() if r.prediction_id}
    assert {p for p, status in report.statuses.items() if status == "completed"} <= known


def test_refused_writes_are_retried_in_order_row_by_row() -> None:
    """Writes kept after a refusal are tried again in order: one the disk still refuses
    does not drop later writes to other rows, and no write is made before an earlier
    one to its rows that waits (live or on retry)."""
    refusing = {"a1", "e"}
    made: list[str] = []

    def write(rows: object, name: str) -> None:
        if name in refusing:
            raise JournalWriteError("cannot write the journal: the disk is full")
        made.append(name)

    stops: list[bool] = []
    writes = JournalWrites(lambda: stops.append(True))
    assert not writes(write, 1, "a1")  # refused: the job stops
    assert not writes(write, 1, "a2")  # waits for a1, not tried
    assert writes(write, 2, "b")
    assert not writes(write, [1, 3], "c")  # waits for a1
    assert not writes(write, 3, "d")  # waits for c
    assert not writes(write, 4, "e")  # refused
    assert writes(write, 5, "f", rows=())
    assert made == ["b", "f"]
    assert stops == [True]
    refusing = {"a1"}  # space for all but a1
    writes.retry()
    assert made == ["b", "f", "e"]  # a1 dropped with a2, c and d; e made
    writes.retry()
    assert made == ["b", "f", "e"]  # each tried again once


async def test_a_disk_stop_frees_the_reserve_only_once_no_download_writes(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk stop while an output's temporary file is being written in a worker thread:
    the reserve is freed for the stop's records only once that write is done and the
    file removed (no download of the job can take the space meant for them); a re-run
    finishes, the row paid once."""
    catalog = write_catalog(tmp_path, 1, models=1)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    go = threading.Event()
    writing: list[Path] = []
    seen: list[tuple[bool, list[str]]] = []  # at the release: a write under way, its file
    append = _outputs.append
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            job = BulkJob(client, loaded, journal, JobOptions(out=out), QuietDisplay())
            loop = asyncio.get_running_loop()

            def stop_for_disk() -> None:  # as a download meeting a full disk does
                job._writes.failed(JournalWriteError("cannot write to out: the disk is full"))
                go.set()

            def slow_append(partial: Path, chunks: Iterable[bytes]) -> None:
                writing.append(partial)
                if not go.is_set():
                    loop.call_soon_threadsafe(stop_for_disk)
                    go.wait(timeout=30)
                try:
                    append(partial, chunks)
                finally:
                    writing.remove(partial)

            release = journal.release_reserve

            def release_and_look() -> bool:
                seen.append((bool(writing), [p.name for p in out.glob(".*.part")]))
                return release()

            monkeypatch.setattr(_outputs, "append", slow_append)
            journal.release_reserve = release_and_look  # type: ignore[method-assign]
            summary = await job.run()
    assert summary.stopped == "disk"
    assert seen == [(False, [])]
    monkeypatch.undo()
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    assert emulator.report().credits_used == 1


def test_an_id_kept_in_the_reserve_goes_back_only_to_the_send_it_answers(
    tmp_path: Path,
) -> None:
    """Ids the journal refused are kept in the reserve's head (past a record a crash cut
    short) and survive its release; the next opening takes each back for a row still
    waiting for it (`submitting`, or `uncertain` with no id) from the same send, not
    one sent again since, says so, and makes the reserve whole again."""
    catalog = write_catalog(tmp_path, 3, models=3)
    out = tmp_path / "out"
    rows = load_catalog(catalog).rows
    reserve = out / RESERVE_NAME
    with Journal.open(out, meta={}, rows=rows) as journal:
        for row in (1, 2, 3):
            journal.sending(row)
        assert journal.rescue(1, "p1")
        cut = reserve.read_bytes().index(b"\0")
        overwrite(reserve, cut, b'{"row":2,"se')  # a crash mid-write
        assert journal.rescue(2, "p2")
        assert journal.rescue(3, "p3")
        journal.ended(2, "uncertain", "SubmissionUncertain", "stopped mid-POST")
        journal.reset([3])
        journal.sending(3)  # sent again: "p3" answered the send before
        assert journal.release_reserve()
        assert reserve.stat().st_size < RESERVE_BYTES
    assert [(r.row, r.prediction_id) for r in kept(out)] == [(1, "p1"), (2, "p2"), (3, "p3")]
    with Journal.open(out, meta={}, rows=rows) as journal:
        states = {r.row: (r.state, r.prediction_id) for r in journal.records()}
        edits = journal.edits
    assert states == {1: ("submitted", "p1"), 2: ("submitted", "p2"), 3: ("submitting", None)}
    assert [e.split(",")[0] for e in edits] == ["line 2: prediction p1", "line 3: prediction p2"]
    assert kept(out) == []
    assert reserve.stat().st_size == RESERVE_BYTES


class _RefusesAnswersAfterAStop(FillingDisk):
    """Refuses the k-th write (the stop), then only the records of a POST's answer (its
    prediction id): the stop's cancel requests rewrite pages the journal has, where a new
    id needs one more, as under a file-size limit (`ulimit -f`: EFBIG, "disk I/O error")."""

    def execute(self, sql: str, *args: Any) -> object:
        if self.writes >= self._k and sql.startswith("UPDATE rows SET state = ?, prediction_id"):
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(sql, *args)

    def _refuse_when_full(self) -> None:
        self.writes += 1
        if self.writes == self._k:
            raise sqlite3.OperationalError("disk I/O error")


@pytest.mark.parametrize("k", range(2, 9))
async def test_a_cancel_goes_only_where_the_journal_holds_it(
    emulator: Emulator, tmp_path: Path, k: int
) -> None:
    """The k-th journal write is refused while POSTs are on the wire, and then the
    records of their answers: the stop's cancels go only to predictions whose cancel
    the journal holds (a row recorded ``canceled``, or asked to be). One whose answer
    the journal could not take (its id kept in the reserve) is left running, so that a
    re-run collects it rather than finding it canceled and paying for it again. (Before,
    the batch cancelled every prediction it had created: under load, 1-3 rows of 40 were
    paid twice after a `ulimit -f` stop.)"""
    catalog = write_catalog(tmp_path, 6, models=3)
    out = tmp_path / "out"
    emulator.inject(HttpFault("slow", route="run", delay=3.0, times=6))
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        disk = _RefusesAnswersAfterAStop(journal._db, out / RESERVE_NAME, k, "")
        journal._db = disk  # type: ignore[assignment]
        try:
            async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
                job = BulkJob(client, loaded, journal, JobOptions(out=out), QuietDisplay())
                summary = await job.run()
        finally:
            journal._db = disk.real
        records = journal.records()
    assert summary.stopped == "disk", summary
    held = {r.prediction_id for r in records if r.cancel_requested or r.state == "canceled"}
    assert set(emulator.report().cancels) <= held, (records, kept(out))
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    report = emulator.report()
    assert report.duplicates <= sum(r.state == "canceled" for r in records)
    assert report.credits_used == 6
