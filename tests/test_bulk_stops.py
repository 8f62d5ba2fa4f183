"""Every kind of stop leaves the journal matching the server: Ctrl-C, a full disk, an
unwritable --out, a restart right after kill -9 (in-process emulator, loop time
fast-forwarded; the disk is a real small tmpfs where the machine allows mounting one)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from unittest import mock

import anyio
import pytest

from fashn_async import AsyncFashn, Limits, RetryPolicy
from fashn_async._payload import prepare_request
from fashn_async.bulk import BulkJob, JobOptions, Journal, load_catalog, write_manifest
from fashn_async.bulk._command import _summarize
from fashn_async.bulk._outcome import JobSummary
from fashn_async.bulk._report import render_report
from fashn_async.bulk._rescue import keep
from fashn_async.bulk._rows import JournalWriteError, disk_problem, disk_remedy
from fashn_async.errors import ConfigurationError
from fashn_async.testing import Emulator, HttpFault
from fashn_async.testing._state import payload_digest
from tests.bulk_support import (
    KEY,
    control,
    read_manifest,
    rerun,
    run_cli,
    standalone_emulator,
    write_catalog,
)


class _Cue:
    """A display that runs ``action`` once, the first time ``when(counts)`` holds."""

    def __init__(self, when: Callable[[Mapping[str, int]], bool]) -> None:
        self.when = when
        self.action: Callable[[], None] = lambda: None
        self.fired = False
        self.notes: list[str] = []
        self.last: dict[str, int] = {}

    def update(self, counts: Mapping[str, int], total: int) -> None:
        self.last = {state: n for state, n in counts.items() if n}
        if not self.fired and self.when(counts):
            self.fired = True
            self.action()

    def note(self, text: str) -> None:
        self.notes.append(text)


def _meta(emulator: Emulator) -> dict[str, str | None]:
    return {"base_url": emulator.url, "model_name": None, "output_format": None}


async def _run_job(
    emulator: Emulator, catalog: Path, out: Path, display: _Cue, *, stop: str = ""
) -> tuple[int, str | None]:
    """One run with ``display``; ``stop="interrupt"`` makes its cue press Ctrl-C."""
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=_meta(emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            job = BulkJob(client, loaded, journal, JobOptions(out=out), display)
            if stop == "interrupt":
                display.action = job.interrupt
            summary = await job.run()
        with contextlib.suppress(OSError):
            write_manifest(out, journal.records())
    return summary.exit_code, summary.problem


async def test_ctrl_c_records_cancelled_rows_as_canceled(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Ctrl-C with rows running: the server cancelled them, and journal, manifest and
    report say `canceled` (the report's "Not done" lists them); a re-run sends them again
    and pays each done row once."""
    catalog = write_catalog(tmp_path, 12, models=4)
    out = tmp_path / "out"
    cue = _Cue(lambda counts: counts.get("submitted", 0) >= 4)
    code, _ = await _run_job(emulator, catalog, out, cue, stop="interrupt")
    assert code == 130
    manifest = read_manifest(out)
    canceled = [e for e in manifest if e["status"] == "canceled"]
    assert canceled, manifest
    assert not [e for e in manifest if e["status"] in ("submitted", "submitting")]
    server = emulator.report().statuses
    for entry in canceled:
        assert server[entry["prediction_id"]] == "canceled", entry
    with Journal.open(out, meta=_meta(emulator), rows=load_catalog(catalog).rows) as journal:
        page = render_report(out, journal.records(), journal.catalog, title="t", runs=[])
    not_done = page.split("<h2>Not done", 1)[1].split("<h2>All rows", 1)[0]
    assert not_done.count("badge canceled") == len(canceled)

    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    report = emulator.report()
    assert report.credits_used == 12  # cancelled predictions are not charged
    assert {e["status"] for e in read_manifest(out)} == {"done"}


async def test_a_canceled_row_removed_from_the_catalog_ends_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Ctrl-C with rows running, then the canceled rows removed from the catalog: they
    are never sent again, so they count against no exit code: the re-run exits 0, its
    summary names them apart (no longer in the catalog), and their manifest lines say so
    rather than promise a re-send (before: every re-run exited 1, for good)."""
    catalog = write_catalog(tmp_path, 12, models=4)
    out = tmp_path / "out"
    cue = _Cue(lambda counts: counts.get("submitted", 0) >= 4)
    code, _ = await _run_job(emulator, catalog, out, cue, stop="interrupt")
    assert code == 130
    canceled = {e["id"] for e in read_manifest(out) if e["status"] == "canceled"}
    assert canceled
    lines = catalog.read_text(encoding="utf-8").splitlines(keepends=True)
    catalog.write_text("".join(line for line in lines if line.split(",")[0] not in canceled))
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    kept = f"no longer in the catalog: {len(canceled)} canceled"
    assert f"{12 - len(canceled)} rows: {12 - len(canceled)} done; {kept}" in printed, printed
    gone = [e for e in read_manifest(out) if e["row"] is None]
    assert {e["id"] for e in gone} == canceled
    assert all(e["error_message"].startswith("no longer in the catalog") for e in gone)
    assert emulator.report().credits_used == 12 - len(canceled)
    code, printed = await rerun(emulator, catalog, out)  # and again: the same
    assert code == 0, printed


async def test_ctrl_c_whose_cancels_fail_loses_nothing_and_pays_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Ctrl-C while every cancel meets a gateway's 502: the rows are recorded canceled
    (a cancel was sent, nothing more is claimed), the predictions run on, and a re-run
    collects them: each done row paid once, no duplicate."""
    catalog = write_catalog(tmp_path, 12, models=4)
    out = tmp_path / "out"
    emulator.inject(HttpFault("gateway_before", route="cancel", status=502))
    cue = _Cue(lambda counts: counts.get("submitted", 0) >= 4)
    code, _ = await _run_job(emulator, catalog, out, cue, stop="interrupt")
    assert code == 130
    stopped = [e for e in read_manifest(out) if e["status"] == "canceled"]
    assert stopped
    assert all("sent a cancel" in (e.get("error_message") or "") for e in stopped), stopped
    assert emulator.report().cancels == []  # none reached the server
    emulator.clear_faults()
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    report = emulator.report()
    assert {e["status"] for e in read_manifest(out)} == {"done"}
    assert report.duplicates == 0
    assert report.credits_used == 12


async def test_ctrl_c_after_a_row_gave_up_claims_no_cancel_for_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A row whose polling gave up left the batch: a later Ctrl-C sends it no cancel, so
    it stays ``submitted`` (not ``canceled``) and the stop does not count it."""
    catalog = write_catalog(tmp_path, 8, models=4)
    out = tmp_path / "out"
    # A 404 and its check on a connection of its own: one in progress at a time, so
    # both reach the same prediction.
    emulator.inject(HttpFault("untracked", route="status", times=2))
    cue = _Cue(lambda counts: False)
    cue.when = lambda counts: any("gave up" in note for note in cue.notes)
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=_meta(emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(
            api_key=emulator.api_key,
            base_url=emulator.url,
            retry=RetryPolicy(attempts=2),
            limits=Limits(in_flight=1),
        ) as client:
            job = BulkJob(client, loaded, journal, JobOptions(out=out), cue)
            cue.action = job.interrupt
            summary = await job.run()
        records = journal.records()
    assert summary.exit_code == 130
    gave_up = [r for r in records if r.error_name == "NotFound"]
    assert len(gave_up) == 1
    assert gave_up[0].state == "submitted"
    assert not gave_up[0].cancel_requested
    canceled = [r for r in records if r.state == "canceled"]
    assert summary.stopped_running == len(canceled)
    cancelled_ids = set(emulator.report().cancels)
    assert gave_up[0].prediction_id not in cancelled_ids


def test_the_stop_line_claims_a_cancel_was_sent_not_that_it_worked() -> None:
    """A stop line says a cancel was sent to the running predictions, never that it worked."""
    said: list[str] = []
    summary = JobSummary(counts={"canceled": 6, "done": 6}, interrupted=True, stopped_running=6)
    _summarize(summary, Path("out"), False, said.append)
    assert any("stopped before the end (a cancel sent to 6 running predictions)" in s for s in said)


@contextlib.contextmanager
def _small_disk(path: Path, size: str, *options: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (skip the test where mounting is denied)."""
    path.mkdir()
    opts = ",".join((f"size={size}", *options))
    mounted = subprocess.run(  # noqa: S603 - fixed command, our own path
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],  # noqa: S607 - system tool
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)  # noqa: S603, S607


def _fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s file system; returns the filler file, which
    exists already (made before the job: opening it needs no space, even on a disk the
    job's own writes have filled first). Unbuffered: a buffered file would hold the
    bytes the full disk refused and raise ENOSPC again when closed."""
    filler = folder / "filler.bin"
    with filler.open("ab", buffering=0) as fh:
        try:
            while fh.write(b"\0" * 65536):
                pass
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        with contextlib.suppress(OSError):
            os.fsync(fh.fileno())
    return filler


async def test_a_disk_that_fills_mid_job_stops_it_cleanly(
    emulator: Emulator, tmp_path: Path
) -> None:
    """--out on a small tmpfs filled after 3 rows are done: exit 2 with the disk named, no
    traceback; every row resumable (none submitting, none failed); nothing charged that
    the journal does not know of; once space is freed a re-run finishes, no row failed
    (Canceled), each row paid once."""
    catalog = write_catalog(tmp_path, 24, models=6)
    with _small_disk(tmp_path / "disk", "16m") as disk:
        out = disk / "results"
        (disk / "filler.bin").touch()
        cue = _Cue(lambda counts: counts.get("done", 0) >= 3)
        filler: list[Path] = []
        cue.action = lambda: filler.append(_fill(disk))
        code, problem = await _run_job(emulator, catalog, out, cue)
        assert code == 2
        assert problem is not None
        assert "full" in problem or "space" in problem.lower(), problem
        assert str(out) in problem  # the disk named by the folder on it
        assert not [note for note in cue.notes if "full" in note]  # the summary says it
        with Journal.open(out, meta=_meta(emulator), rows=load_catalog(catalog).rows) as j:
            states = {r.state for r in j.records()}
            assert cue.last == {s: n for s, n in j.counts().items() if n}  # display = journal
            canceled = sum(r.state == "canceled" for r in j.records())
            known = {r.prediction_id for r in j.records() if r.prediction_id}
        # (submitted: running, its cancel not recordable on the full disk, so not sent:
        # left to finish, and collected by the re-run, never paid twice)
        assert states <= {"done", "completed", "pending", "canceled", "submitted"}, states
        statuses = emulator.report().statuses
        charged = {pid for pid, status in statuses.items() if status == "completed"}
        assert charged <= known  # every charged prediction is in the journal
        filler[0].unlink()
        code, printed = await rerun(emulator, catalog, out)
        manifest = read_manifest(out)
    assert code == 0, printed
    assert "Canceled" not in printed
    assert {e["status"] for e in manifest} == {"done"}
    report = emulator.report()
    # Only cancelled rows were sent twice (one whose prediction finished anyway is
    # collected); each row is paid once.
    assert report.duplicates <= canceled
    assert report.credits_used == 24


class _FailingDb:
    """A journal database that fails every write as a failing disk does (EIO); reads
    still work (the pages are cached)."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real

    def execute(self, sql: str, *args: object) -> object:
        if sql.lstrip().split()[0].upper() in ("SELECT", "PRAGMA"):
            return self.real.execute(sql, *args)
        raise sqlite3.OperationalError("disk I/O error")

    def executemany(self, sql: str, *args: object) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    def close(self) -> None:
        self.real.close()


@pytest.mark.emulator(latency=(20.0, 30.0))
async def test_a_journal_that_fails_every_write_leaves_its_predictions_running(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The journal's disk fails (EIO, not a full disk: no reserve helps) with predictions
    running: the job stops (exit 2) and, unable to record cancels, leaves them running,
    so every row the journal says `submitted` is still running or done on the server,
    none canceled; the re-run collects them, each row paid once."""
    catalog = write_catalog(tmp_path, 6, models=3)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=_meta(emulator), rows=loaded.rows) as journal:
        real = journal._db
        cue = _Cue(lambda counts: counts.get("submitted", 0) >= 3)
        cue.action = lambda: setattr(journal, "_db", _FailingDb(real))
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            summary = await BulkJob(client, loaded, journal, JobOptions(out=out), cue).run()
        journal._db = real
        submitted = [r.prediction_id for r in journal.records() if r.state == "submitted"]
    assert summary.exit_code == 2
    assert submitted
    statuses = emulator.report().statuses
    assert all(statuses[pid] != "canceled" for pid in submitted), statuses
    code, printed = await rerun(emulator, catalog, out)
    # Rows whose "submitted" the disk refused had their ids kept in the reserve's head:
    # the re-run collects them too.
    assert code == 0, printed
    manifest = read_manifest(out)
    assert {e["status"] for e in manifest} == {"done"}
    report = emulator.report()
    assert len(report.accepted) == 6  # nothing sent twice
    assert report.duplicates == 0


async def test_an_out_made_unwritable_mid_job_stops_it(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs refused with a permission error after 2 rows are done (the folder made
    read-only or immutable meanwhile): the job stops (exit 2, the folder named) rather
    than go on paying for outputs it cannot keep."""
    from fashn_async import _outputs

    catalog = write_catalog(tmp_path, 24, models=6)
    out = tmp_path / "out"
    refusing: list[bool] = []
    make_folder = _outputs._make_folder

    def refused(directory: Path) -> None:
        if refusing:
            raise PermissionError(errno.EACCES, "Permission denied", str(directory))
        make_folder(directory)

    monkeypatch.setattr(_outputs, "_make_folder", refused)
    cue = _Cue(lambda counts: counts.get("done", 0) >= 2)
    cue.action = lambda: refusing.append(True)
    code, problem = await _run_job(emulator, catalog, out, cue)
    assert code == 2, (problem, cue.notes[:3])
    assert problem is not None
    assert "permission denied" in problem
    assert str(out) in problem
    assert len(emulator.report().accepted) < 24  # it stopped sending


async def test_cancels_the_journal_could_not_record_are_sent_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A stop whose records were lost (the disk refused even them): rows the journal says
    `submitted` whose predictions were cancelled on the server are sent again by the next
    run, never marked failed (Canceled)."""
    catalog = write_catalog(tmp_path, 4, models=2)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=_meta(emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            for row in loaded.rows[:3]:
                assert row.request is not None
                journal.sending(row.row)
                prediction = await client.submit(row.request)
                journal.submitted(row.row, prediction.id)
                await client.cancel(prediction.id)  # and the disk refused to record it
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    assert "Canceled" not in printed
    assert {e["status"] for e in read_manifest(out)} == {"done"}
    assert emulator.report().credits_used == 4


async def test_an_unwritable_out_cannot_start(emulator: Emulator, tmp_path: Path) -> None:
    """--out under a file, on a read-only file system, or on a full disk: 'cannot start',
    exit 2, and what to do: another folder, or (a full disk) free some space."""
    catalog = write_catalog(tmp_path, 2, models=2)
    (tmp_path / "a-file").write_text("x")
    code, printed = await rerun(emulator, catalog, tmp_path / "a-file" / "results")
    assert code == 2
    assert printed.startswith("cannot start: cannot write to ")
    with _small_disk(tmp_path / "ro", "1m", "ro") as readonly:
        code, printed = await rerun(emulator, catalog, readonly / "results")
    assert code == 2
    assert "cannot start" in printed
    assert "read-only" in printed
    assert "this user can write to" in printed
    with _small_disk(tmp_path / "full", "64k") as full:  # below the journal's reserve
        code, printed = await rerun(emulator, catalog, full / "results")
    assert code == 2
    assert printed.startswith("cannot start: cannot write to ")
    assert "the disk is full" in printed
    assert "free some space" in printed  # not another folder: this one may do, freed
    assert emulator.report().accepted == []


async def test_a_job_whose_disk_is_still_full_is_not_sent_to_another_folder(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A job that has sent rows, re-run on a disk still full (SQLite says 'disk I/O
    error' then): the disk is named full, and the advice keeps this --out (its journal
    knows what was paid for), never another folder (a new journal: every row paid again);
    freed, the same command finishes without paying for any row twice."""
    catalog = write_catalog(tmp_path, 3, models=3)
    with _small_disk(tmp_path / "small", "3m") as small:
        out = small / "results"
        assert (await rerun(emulator, catalog, out))[0] == 0
        filler = _fill(small)
        code, printed = await rerun(emulator, catalog, out)
        assert code == 2, printed
        assert "the disk is full" in printed
        assert "same command again with this --out" in printed
        assert "give --out" not in printed
        filler.unlink()
        assert (await rerun(emulator, catalog, out))[0] == 0
    assert emulator.report().credits_used == 3


@pytest.mark.parametrize(
    "problem", ["the disk is full (x)", "the file system is read-only", "permission denied"]
)
def test_the_remedy_for_a_folder_with_a_journal_keeps_it(problem: str) -> None:
    assert "give --out" not in disk_remedy(problem, resumable=True)
    assert "this --out" in disk_remedy(problem, resumable=True)
    assert "--out" in disk_remedy(problem, resumable=False)


@pytest.mark.parametrize("slow", [0.0, 25.0])
async def test_a_restart_after_kill_9_draws_no_429(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slow: float
) -> None:
    """A dead run's 6 rows were mid-POST and landed (running on the server, unknown to the
    journal): the restart counts them against the in-flight cap and meets no 429. Also
    when the server started them ``slow`` seconds after the journal wrote them (a slow
    upload): up to 11 s runs then end 36 s after those writes, past the 33 s the restart
    holds a slot from a send, so it holds them from when the server may have acted."""
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(time, "time", lambda: 1.7e9 + loop.time())  # wall clock, on loop time
    if slow:
        emulator.inject(HttpFault("slow", route="run", delay=slow, times=6))
    catalog = write_catalog(tmp_path, 12, models=4)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=_meta(emulator), rows=loaded.rows) as journal:
        async with (
            AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client,
            anyio.create_task_group() as group,
        ):
            for row in loaded.rows[:6]:
                journal.sending(row.row)  # then kill -9: the POST lands, no answer read
                assert row.request is not None
                group.start_soon(client.submit, row.request)
    code, printed = await rerun(emulator, catalog, out)
    report = emulator.report()
    assert sum(report.rejected.values()) == 0, report.rejected
    assert code == 1  # the six are uncertain, not re-sent
    assert "6 uncertain rows" in printed
    assert "the last run left 6 rows mid-POST, which may be running" in printed
    assert {e["status"] for e in read_manifest(out)} == {"done", "uncertain"}


async def test_a_restart_counts_posts_the_server_acts_on_after_it_began(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead run's 6 rows were mid-POST, and the server acts on them 40 s later, after
    the restart began (a slow server, counting a request when it acts): the restart
    counts each against the cap and the window until the client's timeout (60 s) after it
    went out, so neither those POSTs nor its own meet a 429."""
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(time, "time", lambda: 1.7e9 + loop.time())  # wall clock, on loop time
    catalog = write_catalog(tmp_path, 30, models=6)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=_meta(emulator), rows=loaded.rows) as journal:
        for row in loaded.rows[:6]:
            journal.sending(row.row)  # then kill -9, the POSTs on the wire

    async def acted_on_late() -> None:
        await anyio.sleep(40.0)
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as late:
            for row in loaded.rows[:6]:
                assert row.request is not None
                await late.submit(row.request)

    async with anyio.create_task_group() as group:
        group.start_soon(acted_on_late)
        code, printed = await rerun(emulator, catalog, out)
    report = emulator.report()
    assert sum(report.rejected.values()) == 0, report.rejected
    assert code == 1  # the six are uncertain, not re-sent
    assert "6 uncertain rows" in printed
    assert len(report.accepted) == 30


@pytest.mark.looptime(False)  # real processes, real time
def test_the_cli_on_a_disk_too_small_exits_2_with_one_line(tmp_path: Path) -> None:
    """`fashn-async batch` with --out on a 1 MiB tmpfs that fills mid-job: exit 2, the
    disk named, no traceback (no ExceptionGroup); grown, the same command finishes with
    every row paid once and no 429."""
    catalog = write_catalog(tmp_path, 60)
    with (
        _small_disk(tmp_path / "disk", "1m") as disk,
        standalone_emulator("--time-scale", "0.01") as url,
    ):
        args = ["batch", str(catalog), "--out", str(disk / "results"), "--base-url", url,
                "--time-scale", "0.01", "--progress", "lines"]  # fmt: skip
        full = run_cli(*args, FASHN_API_KEY=KEY)
        assert full.returncode == 2, full.stderr
        lines = full.stderr.splitlines()
        (stopped,) = [line for line in lines if "disk is full" in line]  # one line
        assert stopped.startswith("stopped")
        assert str(disk / "results") in stopped
        # The last progress line and the summary count the same rows the same way.
        progress = [line for line in lines if " progress " in line][-1]
        summary = next(line for line in lines if line.startswith("60 rows: "))
        assert progress.split(": ", 1)[1].split(";")[0] == summary.split(": ", 1)[1]
        # No traceback from the job. (The batch may still log its supervisor's
        # BrokenResourceError as "Task exception was never retrieved" when a stop leaves
        # it: issue 11's quiet-exit fix removes that; then drop this filter.)
        job_output = full.stderr.split("Task exception was never retrieved")[0]
        assert "Traceback" not in job_output
        assert "Group" not in job_output
        _remount(disk, "size=64m")
        again = run_cli(*args, FASHN_API_KEY=KEY)
        # A POST answered just as the disk filled: its id, which the journal could not
        # take, was kept in the reserve's head, and the re-run collects it (never
        # uncertain, never sent again).
        manifest = read_manifest(disk / "results")
        report = control(url, "GET", "/_emulator/report")
    assert again.returncode == 0, again.stderr
    assert {e["status"] for e in manifest} == {"done"}
    assert report["credits_used"] == 60  # each row paid once
    assert report["rejected"] == {}


def _remount(path: Path, options: str) -> None:
    subprocess.run(  # noqa: S603 - fixed command, our own path
        ["mount", "-o", f"remount,{options}", str(path)],  # noqa: S607 - system tool
        check=True,
        capture_output=True,
    )


def test_every_journal_write_fails_as_a_journal_write_error(tmp_path: Path) -> None:
    """Every write method of the journal, on a database that refuses writes, raises
    JournalWriteError (never a raw sqlite3 or OS error), so a job can stop cleanly."""
    catalog = write_catalog(tmp_path, 2, models=2)
    args: dict[str, tuple[object, ...]] = {
        "sending": (1,), "submitted": (1, "p1"), "completed": (1, "p1", ["u"]),
        "saved": (1, ["f.png"]), "ended": (1, "failed", "E", "m"), "note_error": (1, "E", "m"),
        "reset": ([1],), "canceled": ([1], "note"), "request_cancel": ([1],),
        "begin_run": (), "end_run": (1, "finished"), "take_rescued": (),
    }  # fmt: skip
    # (rescue never raises: it says whether it kept the id)
    reads = {"meta", "records", "counts", "runs", "sends", "close", "open", "release_reserve",
             "sending_off_loop", "rescue"}  # fmt: skip
    public = {n for n in dir(Journal) if not n.startswith("_") and callable(getattr(Journal, n))}
    assert public - reads == set(args)  # a new write method needs a line here
    journal = Journal.open(tmp_path / "out", meta={}, rows=load_catalog(catalog).rows)
    real = journal._db
    journal._db = sqlite3.connect(":memory:")  # no such tables: every statement fails
    try:
        assert not journal.rescue(1, "p1")
        assert keep(tmp_path / "out", 1, 1, "p1")  # for take_rescued to write
        for name, values in args.items():
            with pytest.raises(JournalWriteError, match="cannot write the journal"):
                getattr(journal, name)(*values)
    finally:
        journal._db.close()
        journal._db = real
        journal.close()


@pytest.mark.parametrize("category", ["bottoms", "hats"])
async def test_an_edited_canceled_row_is_sent_and_recorded_with_its_new_values(
    emulator: Emulator, tmp_path: Path, category: str
) -> None:
    """A row cancelled by a stop, then edited: the re-run sends the new values, and the
    journal and manifest record exactly those (never the old values beside the new
    request); an edit that makes it invalid is reported and nothing is sent."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=_meta(emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            first = loaded.rows[0]
            assert first.request is not None
            journal.sending(first.row)
            prediction = await client.submit(first.request)
            journal.submitted(first.row, prediction.id)
            await client.cancel(prediction.id)
            journal.canceled([first.row], "stopped")
    text = catalog.read_text(encoding="utf-8")
    assert "sku-1,images/model_0.png,images/garment_0.png,tops" in text
    catalog.write_text(text.replace("garment_0.png,tops", f"garment_0.png,{category}", 1))
    code, printed = await rerun(emulator, catalog, out)
    if category == "hats":  # the edit is invalid: nothing sent, the old values kept
        assert "changed after it was sent (canceled)" in printed
        assert "the new ones are not sent: category: must be one of" in printed
        assert len(emulator.report().accepted) == 2
        entry = next(e for e in read_manifest(out) if e["id"] == "sku-1")
        assert (entry["status"], entry["inputs"]["category"]) == ("canceled", "tops")
        return
    assert code == 0, printed
    assert "changed after it was sent (canceled)" in printed
    edited = load_catalog(catalog).rows[0].request
    assert edited is not None
    assert edited.category == "bottoms"
    sent = payload_digest((await prepare_request(edited)).body)
    accepted = emulator.report().accepted
    assert len(accepted) == 3
    assert accepted[-1].payload_digest == sent
    entry = next(e for e in read_manifest(out) if e["id"] == "sku-1")
    assert (entry["status"], entry["inputs"]["category"]) == ("done", "bottoms")
    assert entry["prediction_id"] == accepted[-1].id


def test_a_read_only_disk_is_called_read_only_even_when_full(tmp_path: Path) -> None:
    """A disk both read-only and nearly full: read-only is what to fix, not space."""
    from fashn_async.bulk import _rows

    error = OSError(errno.EROFS, "Read-only file system")
    with mock.patch.object(_rows, "_no_room", return_value=True):
        assert disk_problem(error, tmp_path) == "the file system is read-only"
        assert disk_problem(OSError(errno.EIO, "I/O"), tmp_path).startswith("the disk is full")


@pytest.mark.parametrize(
    "code", [errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EISDIR, errno.ELOOP]
)
def test_an_error_that_names_itself_is_not_called_a_full_disk(tmp_path: Path, code: int) -> None:
    """Where the folder's file system shows no room (/proc, /sys: 0 bytes free, always),
    an error that says what it is (no such folder, a name too long) is not taken for a
    full disk: `--out /proc/self/x` said the disk was full. SQLite's words, and EIO, are
    still read against the room left."""
    from fashn_async.bulk import _rows

    error = OSError(code, os.strerror(code))
    with mock.patch.object(_rows, "_no_room", return_value=True):
        assert disk_problem(error, tmp_path) == os.strerror(code)
        assert disk_problem(sqlite3.OperationalError("disk I/O error"), tmp_path).startswith(
            "the disk is full"
        )


@pytest.mark.parametrize("long", ["x" * 300, "/".join(["y" * 200] * 25)])
def test_an_out_folder_whose_name_is_too_long_cannot_start(tmp_path: Path, long: str) -> None:
    """A --out name past the file system's limits (255 bytes a name, 4,096 a path): the
    job cannot start, saying so (a traceback, exit 1, before)."""
    rows = load_catalog(write_catalog(tmp_path, 1)).rows
    with pytest.raises(ConfigurationError, match="File name too long"):
        Journal.open(tmp_path / long, meta={}, rows=rows)
