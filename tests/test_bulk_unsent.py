"""What a full disk must not turn into a false claim: a row whose POST created nothing (a
429, a 5xx, or never sent) is `pending`, never `uncertain`, even when the journal refuses
to say so (the reserve's head keeps it, as it keeps ids); a row is `canceled` only when
its cancel was recorded, and so sent, never when the journal refused to record it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import anyio
import pytest

from fashn_async import AsyncFashn
from fashn_async._atomic import overwrite
from fashn_async.bulk import BulkJob, JobOptions, Journal, load_catalog
from fashn_async.bulk._command import _summarize
from fashn_async.bulk._folder import RESCUE_BYTES, RESERVE_NAME
from fashn_async.bulk._rescue import keep, kept
from fashn_async.testing import Emulator
from tests.bulk_support import (
    MODES,
    HeldAtTheDoor,
    QuietDisplay,
    filling_disk,
    job_meta,
    read_manifest,
    rerun,
    write_catalog,
)


class _Cue(QuietDisplay):
    """A display that runs ``action`` once, the first time ``when(counts)`` holds."""

    def __init__(self, when: Callable[[Mapping[str, int]], bool]) -> None:
        self.when = when
        self.action: Callable[[], None] = lambda: None
        self.fired = False

    def update(self, counts: Mapping[str, int], total: int) -> None:  # type: ignore[override]
        if not self.fired and self.when(counts):
            self.fired = True
            self.action()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", range(1, 6))
async def test_a_stop_during_a_submitting_write_then_a_full_disk_leaves_the_row_pending(
    emulator: Emulator, tmp_path: Path, k: int, mode: str
) -> None:
    """Ctrl-C while a row's `submitting` write is in its worker thread, and the disk
    refusing journal writes from the k-th after that write: its POST never goes out, so
    the row is never `uncertain` (its reset, refused, is kept in the reserve's head and
    taken back); a plain re-run sends it, paid once."""
    catalog = write_catalog(tmp_path, 1, models=1)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        with filling_disk(journal, 10**6, mode) as disk:
            async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
                job = BulkJob(client, loaded, journal, JobOptions(out=out), QuietDisplay())

                async def meanwhile() -> None:
                    job.interrupt()
                    await anyio.wait_all_tasks_blocked()  # the job waits for the write

                door = HeldAtTheDoor(journal.guard, meanwhile)
                sending = journal.sending

                def sending_then_fill(row: int) -> None:
                    door.rows[threading.get_ident()] = row
                    sending(row)
                    disk.refuse_from(k)

                journal.guard = door  # type: ignore[assignment]
                journal.sending = sending_then_fill  # type: ignore[method-assign]
                summary = await job.run()
                assert door.done is not None
                await anyio.to_thread.run_sync(door.done.result)
        records = journal.records()
    assert summary.interrupted
    assert door.row is not None  # the write was held: the case happened
    assert emulator.report().accepted == []  # its POST never went out
    assert [r.state for r in records] != ["uncertain"]
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    assert emulator.report().credits_used == 1


@pytest.mark.emulator(latency=(20.0, 30.0))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", range(1, 5))
async def test_a_stop_whose_cancels_the_journal_refuses_claims_no_cancel(
    emulator: Emulator, tmp_path: Path, k: int, mode: str
) -> None:
    """Ctrl-C with predictions running, the disk refusing journal writes from the stop's
    k-th on: a row ends `canceled` only if a cancel was sent for it, the summary counts
    only those, and the others stay `submitted`; a re-run collects them, each row paid
    once, only rows whose prediction was cancelled sent again."""
    catalog = write_catalog(tmp_path, 6, models=3)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        with filling_disk(journal, 10**6, mode) as disk:
            async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
                cue = _Cue(lambda counts: counts.get("submitted", 0) >= 3)
                job = BulkJob(client, loaded, journal, JobOptions(out=out), cue)

                def stop() -> None:
                    disk.refuse_from(k)
                    job.interrupt()

                cue.action = stop
                summary = await job.run()
        records = journal.records()
    assert cue.fired
    cancels = set(emulator.report().cancels)
    canceled = {r.prediction_id for r in records if r.state == "canceled"}
    assert canceled <= cancels, (canceled, cancels)
    said: list[str] = []
    _summarize(summary, out, False, said.append)
    claimed = [s for s in said if "a cancel sent to" in s]
    if claimed:
        assert f"a cancel sent to {len(canceled)} running prediction" in claimed[0], said
    else:
        assert not canceled, said
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    assert {e["status"] for e in read_manifest(out)} == {"done"}
    report = emulator.report()
    assert report.duplicates <= len(cancels)
    assert report.credits_used == 6


@pytest.mark.emulator(latency=(20.0, 30.0))
async def test_a_cancel_asked_by_an_earlier_run_is_not_taken_for_this_runs(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A row left `submitted` with its cancel asked by a run killed mid-stop (the cancel
    never sent): a later run's stop whose journal refuses its own cancels leaves that
    row `submitted` too, not `canceled`: the old record says nothing of this stop."""
    catalog = write_catalog(tmp_path, 6, models=3)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    first = loaded.rows[0]
    assert first.request is not None
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            journal.sending(1)
            prediction = await client.submit(first.request)
        journal.submitted(1, prediction.id)
        journal.request_cancel([1])  # and killed before sending it
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        with filling_disk(journal, 10**6, "until freed") as disk:
            async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
                cue = _Cue(lambda counts: counts.get("submitted", 0) >= 3)
                job = BulkJob(client, loaded, journal, JobOptions(out=out), cue)

                def stop() -> None:
                    disk.refuse_from(1)
                    job.interrupt()

                cue.action = stop
                await job.run()
        states = {r.row: r.state for r in journal.records()}
    assert cue.fired
    assert emulator.report().cancels == []
    assert states[1] == "submitted", states
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    assert emulator.report().credits_used == 6


def test_a_post_kept_as_unsent_goes_back_only_to_the_send_it_answers(tmp_path: Path) -> None:
    """A POST that created nothing, which the journal refused to record, is kept in the
    reserve's head; the next opening makes its row `pending` again only while the row is
    still waiting on that same send (`submitting`, or `uncertain` with no id), never a row
    sent again since or one with a prediction id, and says so."""
    catalog = write_catalog(tmp_path, 5, models=5)
    out = tmp_path / "out"
    rows = load_catalog(catalog).rows
    with Journal.open(out, meta={}, rows=rows) as journal:
        for row in (1, 2, 3, 4):
            journal.sending(row)
        assert journal.rescue(1, None)
        assert journal.rescue(2, None)
        journal.ended(2, "uncertain", "SubmissionUncertain", "stopped mid-POST")
        assert journal.rescue(3, None)
        journal.reset([3])
        journal.sending(3)  # sent again: the record answers the send before
        journal.ended(4, "uncertain", "NotFound", "404 twice", "p4")
        assert keep(out, 4, 1, None)  # a row with an id is never made pending
        assert journal.rescue(5, None)  # pending: nothing waits, nothing kept
    assert [(r.row, r.sends, r.prediction_id) for r in kept(out)] == [
        (1, 1, None),
        (2, 1, None),
        (3, 1, None),
        (4, 1, None),
    ]
    with Journal.open(out, meta={}, rows=rows) as journal:
        states = {r.row: (r.state, r.prediction_id) for r in journal.records()}
        edits = journal.edits
    assert states == {
        1: ("pending", None),
        2: ("pending", None),
        3: ("submitting", None),
        4: ("uncertain", "p4"),
        5: ("pending", None),
    }
    assert [e.split(":")[0] for e in edits] == ["line 2", "line 3"]
    assert all("sent again" in e for e in edits), edits
    assert kept(out) == []


def test_a_reserve_head_garbled_between_runs_is_cleared_at_the_next_open(tmp_path: Path) -> None:
    """The reserve's head holds bytes that are no record and no zero (a file torn by a
    crash): the next open clears it, so that the next disk stop can still keep an id
    there (a break-it helper's case: every later rescue refused, the paid id only
    printed)."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    rows = load_catalog(catalog).rows
    with Journal.open(out, meta={}, rows=rows):
        pass
    overwrite(out / RESERVE_NAME, 0, b"\xff" * RESCUE_BYTES)
    with Journal.open(out, meta={}, rows=rows) as journal:
        journal.sending(1)
        assert journal.rescue(1, "p1")


async def test_resend_uncertain_after_a_kill_mid_post_sends_the_row_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A row left `submitting` (killed mid-POST), then a run with --resend-uncertain: the
    row, now `uncertain`, is sent again in that run, not only in the next (a break-it
    helper's case: exit 1, "re-run with --resend-uncertain", the flag just given)."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        journal.sending(1)  # (killed mid-POST)
    with Journal.open(out, meta=job_meta(emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            options = JobOptions(out=out, resend_uncertain=True)
            summary = await BulkJob(client, loaded, journal, options, QuietDisplay()).run()
        states = [r.state for r in journal.records()]
    assert states == ["done", "done"], states
    assert summary.exit_code == 0
