"""Bulk jobs against the in-process emulator (limits on, loop time fast-forwarded).

Crashes are staged by writing the journal as a killed process would have left it, then
resuming; the emulator's report says what was really submitted.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image
from rich.console import Console

from fashn_async import AsyncFashn, Limits, errors
from fashn_async.bulk import Journal, load_catalog
from fashn_async.bulk._command import BatchSettings, dry_run, run_batch
from fashn_async.bulk._outcome import JobOptions, Outcome, failure_outcome
from fashn_async.bulk._pacing import carryover, counted_at
from fashn_async.bulk._rows import JournalWriteError
from fashn_async.testing import Emulator, HttpFault, PredictionFault
from tests.bulk_support import journal_counts, read_manifest, write_catalog


async def _run(
    emulator: Emulator, catalog: Path, out: Path, display: Any = "lines", **options: Any
) -> tuple[int, str]:
    """Run the batch command's code path; return its exit code and what it printed."""
    buffer = io.StringIO()
    settings = BatchSettings(
        catalog=catalog,
        options=JobOptions(out=out, **options),
        api_key=emulator.api_key,
        base_url=emulator.url,
        display=display,
        report=False,
    )
    code = await run_batch(settings, Console(file=buffer, width=200))
    return code, buffer.getvalue()


def _meta(catalog: Path, emulator: Emulator) -> dict[str, str | None]:
    return {
        "catalog": str(catalog),
        "catalog_sha256": load_catalog(catalog).sha256,
        "base_url": emulator.url,
        "model_name": None,
        "output_format": None,
    }


async def test_every_row_done_once_with_valid_images(emulator: Emulator, tmp_path: Path) -> None:
    """12 rows: exit 0, one manifest line each, one submission each, files are images."""
    catalog = write_catalog(tmp_path, 12, models=3)
    out = tmp_path / "out"
    code, printed = await _run(emulator, catalog, out)
    assert code == 0, printed
    manifest = read_manifest(out)
    assert [e["row"] for e in manifest] == list(range(1, 13))
    assert {e["status"] for e in manifest} == {"done"}
    report = emulator.report()
    assert sorted(a.id for a in report.accepted) == sorted(e["prediction_id"] for e in manifest)
    assert report.duplicates == 0
    assert sum(report.rejected.values()) == 0
    for entry in manifest:
        assert entry["files"] == [f"{load_catalog(catalog).rows[entry['row'] - 1].key}_0.png"]
        with Image.open(out / entry["files"][0]) as image:
            image.verify()
    assert manifest[0]["id"] == "sku-1"
    assert manifest[0]["inputs"]["garment_image"] == "images/garment_0.png"

    again, printed = await _run(emulator, catalog, out)  # nothing left: nothing sent
    assert again == 0, printed
    assert len(emulator.report().accepted) == 12


async def test_bad_rows_are_listed_and_the_others_run(emulator: Emulator, tmp_path: Path) -> None:
    """Missing file, bad category, non-image: invalid with line numbers; good rows done."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "readme.png").write_text("text, not pixels")
    columns = ("model_image", "garment_image", "category")
    bad = [
        dict(zip(columns, values, strict=True))
        for values in [
            ("images/model_0.png", "images/nope.png", "tops"),
            ("images/model_0.png", "images/garment_0.png", "hats"),
            ("images/readme.png", "images/garment_0.png", "tops"),
        ]
    ]
    catalog = write_catalog(tmp_path, 4, models=2, extra=bad)
    out = tmp_path / "out"
    code, printed = await _run(emulator, catalog, out)
    assert code == 1
    manifest = read_manifest(out)
    assert [e["status"] for e in manifest] == ["done"] * 4 + ["invalid"] * 3
    messages = [e["error_message"] for e in manifest[4:]]
    assert messages[0].startswith("line 6: garment_image: no such file")
    assert messages[1].startswith("line 7: category: must be one of")
    assert messages[2].startswith("line 8: model_image: not an image")
    for line in (6, 7, 8):
        assert f"line {line}: " in printed
    assert len(emulator.report().accepted) == 4

    # Fixed on disk (the catalog itself unchanged): a re-run sends that row.
    (tmp_path / "images" / "nope.png").write_bytes((tmp_path / "images/garment_1.png").read_bytes())
    code, _ = await _run(emulator, catalog, out)
    assert code == 1
    assert [e["status"] for e in read_manifest(out)][4:] == ["done", "invalid", "invalid"]


async def test_submitted_rows_are_polled_by_id_never_sent_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A run killed after writing ids resumes by polling them: no second submission."""
    catalog = write_catalog(tmp_path, 5, models=5)
    out = tmp_path / "out"
    rows = load_catalog(catalog).rows
    async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
        with Journal.open(out, meta=_meta(catalog, emulator), rows=rows) as journal:
            for row in rows[:2]:  # as a killed run left them: sent, id recorded
                assert row.request is not None
                journal.sending(row.row)
                journal.submitted(row.row, (await client.submit(row.request)).id)
    ids = [a.id for a in emulator.report().accepted]

    code, printed = await _run(emulator, catalog, out)
    assert code == 0, printed
    manifest = read_manifest(out)
    assert [e["prediction_id"] for e in manifest[:2]] == ids
    assert len(emulator.report().accepted) == 5
    assert emulator.report().duplicates == 0


async def test_a_row_caught_mid_post_is_uncertain_until_resent_on_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A row left 'submitting' is uncertain: listed, not sent; --resend-uncertain sends it."""
    catalog = write_catalog(tmp_path, 3, models=3)
    out = tmp_path / "out"
    with Journal.open(out, meta=_meta(catalog, emulator), rows=load_catalog(catalog).rows) as j:
        j.sending(2)  # killed between the POST going out and its answer
    code, printed = await _run(emulator, catalog, out)
    assert code == 1
    assert "1 uncertain row, not re-sent" in printed
    assert "(line 3)" in printed
    manifest = read_manifest(out)
    assert [e["status"] for e in manifest] == ["done", "uncertain", "done"]
    assert manifest[1]["error_name"] == "SubmissionUncertain"
    assert len(emulator.report().accepted) == 2

    code, printed = await _run(emulator, catalog, out)  # again without the flag: not sent
    assert code == 1
    assert len(emulator.report().accepted) == 2
    # The summary, the last thing printed, says how to send it again.
    hint = printed.splitlines()[-1]
    assert hint.startswith("1 uncertain row: may have been charged (a POST without an answer")
    assert "re-run with --resend-uncertain to send it again (it may then be" in hint
    code, printed = await _run(emulator, catalog, out, resend_uncertain=True)
    assert code == 0
    assert "uncertain" not in printed.splitlines()[-1]
    assert [e["status"] for e in read_manifest(out)] == ["done"] * 3
    assert len(emulator.report().accepted) == 3


async def test_a_post_answered_by_silence_is_uncertain(emulator: Emulator, tmp_path: Path) -> None:
    """A POST that lands but loses its answer: uncertain, never re-sent without the flag."""
    emulator.inject(HttpFault(kind="drop_after", route="run", times=1))
    catalog = write_catalog(tmp_path, 4, models=4)
    out = tmp_path / "out"
    code, _ = await _run(emulator, catalog, out)
    assert code == 1
    manifest = read_manifest(out)
    (uncertain,) = [e for e in manifest if e["status"] == "uncertain"]
    assert uncertain["error_name"] == "SubmissionUncertain"
    assert uncertain["prediction_id"] is None
    assert len(emulator.report().accepted) == 4  # it landed: the emulator has it
    code, _ = await _run(emulator, catalog, out, resend_uncertain=True)
    assert code == 0
    assert emulator.report().duplicates == 1  # paid twice, as the flag warned


@pytest.mark.emulator(credits=3)
async def test_out_of_credits_stops_sending_and_keeps_the_rest_pending(
    emulator: Emulator, tmp_path: Path
) -> None:
    """OutOfCredits: the job stops submitting, rows not sent stay pending (exit 1)."""
    catalog = write_catalog(tmp_path, 6, models=6)
    out = tmp_path / "out"
    code, printed = await _run(emulator, catalog, out)
    assert code == 1
    assert "the job stopped submitting" in printed
    statuses = [e["status"] for e in read_manifest(out)]
    assert statuses.count("done") == 3
    assert statuses.count("pending") == 3
    assert "run the same command again to resume" in printed


async def test_failed_predictions_keep_name_and_message(emulator: Emulator, tmp_path: Path) -> None:
    """A failed prediction is 'failed' with its error; --retry-failed sends it again."""
    emulator.inject(PredictionFault(name="PoseError", message="no pose found"))
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    code, printed = await _run(emulator, catalog, out)
    assert code == 1
    manifest = read_manifest(out)
    assert {(e["status"], e["error_name"], e["error_message"]) for e in manifest} == {
        ("failed", "PoseError", "no pose found")
    }
    assert all(e["prediction_id"] for e in manifest)
    assert "line 2: failed: PoseError: no pose found" in printed
    assert "re-run with --retry-failed to send them again" in printed.splitlines()[-1]
    emulator.clear_faults()
    code, _ = await _run(emulator, catalog, out)
    assert code == 1  # failed rows are final without the flag
    code, _ = await _run(emulator, catalog, out, retry_failed=True)
    assert code == 0
    assert {e["status"] for e in read_manifest(out)} == {"done"}


async def test_missing_outputs_are_downloaded_again(emulator: Emulator, tmp_path: Path) -> None:
    """A done row whose file is gone is downloaded again, not re-submitted."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    assert (await _run(emulator, catalog, out))[0] == 0
    lost = out / read_manifest(out)[1]["files"][0]
    lost.unlink()
    assert (await _run(emulator, catalog, out))[0] == 0
    assert lost.is_file()
    assert len(emulator.report().accepted) == 2


async def test_a_changed_api_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    """A journal remembers its API: another address is refused with the reason."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    assert (await _run(emulator, catalog, out))[0] == 0
    settings = BatchSettings(
        catalog=catalog,
        options=JobOptions(out=out),
        api_key=emulator.api_key,
        base_url="http://127.0.0.1:9",
        display="quiet",
        report=False,
    )
    buffer = io.StringIO()
    assert await run_batch(settings, Console(file=buffer)) == 2
    assert "the API address (--base-url) changed" in buffer.getvalue()


async def test_a_second_job_on_the_same_folder_is_refused(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Two jobs on one folder would both submit: the second cannot start."""
    catalog = write_catalog(tmp_path, 1, models=1)
    out = tmp_path / "out"
    with Journal.open(out, meta=_meta(catalog, emulator), rows=load_catalog(catalog).rows):
        code, printed = await _run(emulator, catalog, out)
        assert code == 2
        assert "another fashn-async job" in printed
        # The lock file deleted meanwhile (a cleanup of dotfiles, say): the folder's own
        # lock still refuses it (a second job took a new lock file and paid rows again).
        (out / ".journal.lock").unlink()
        code, printed = await _run(emulator, catalog, out)
        assert code == 2
        assert "another fashn-async job" in printed
    assert emulator.report().accepted == []


@pytest.mark.emulator(api_key="sk-very-secret-test-key-1234")
async def test_the_api_key_appears_nowhere(emulator: Emulator, tmp_path: Path) -> None:
    """Not in the output, the manifest, the report or the journal."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    buffer = io.StringIO()
    settings = BatchSettings(
        catalog=catalog,
        options=JobOptions(out=out),
        api_key=emulator.api_key,
        base_url=emulator.url,
        display="lines",
    )
    assert await run_batch(settings, Console(file=buffer)) == 0
    assert "sk-very-secret" not in buffer.getvalue() + repr(settings)
    for name in ("manifest.jsonl", "report.html", "journal.sqlite3"):
        assert b"sk-very-secret" not in (out / name).read_bytes()

    wrong = BatchSettings(
        catalog=catalog,
        options=JobOptions(out=tmp_path / "other"),
        api_key="sk-wrong-secret",
        base_url=emulator.url,
        report=False,
    )
    buffer = io.StringIO()
    assert await run_batch(wrong, Console(file=buffer)) == 2
    assert "refused the API key" in buffer.getvalue()
    assert "sk-wrong-secret" not in buffer.getvalue()


async def test_an_unreachable_api_cannot_start(tmp_path: Path) -> None:
    """Nothing listening at --base-url: exit 2 once the connect retries are spent."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    catalog = write_catalog(tmp_path, 1, models=1)
    settings = BatchSettings(
        catalog=catalog,
        options=JobOptions(out=tmp_path / "out"),
        api_key="test-key-0123",
        base_url=f"http://127.0.0.1:{port}",
        display="quiet",
    )
    buffer = io.StringIO()
    assert await run_batch(settings, Console(file=buffer, width=300)) == 2
    assert f"cannot reach the API at http://127.0.0.1:{port}" in buffer.getvalue()
    assert journal_counts(tmp_path / "out") == {"pending": 1}  # nothing marked sent


async def test_a_mistyped_api_address_does_not_lock_the_folder(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A first run at a wrong --base-url sent nothing: the right address is taken on the
    next run (which finishes), and from then on a different one is refused."""
    catalog = write_catalog(tmp_path, 1, models=1)
    out = tmp_path / "out"

    async def run(base_url: str) -> tuple[int, str]:
        settings = BatchSettings(
            catalog=catalog,
            options=JobOptions(out=out),
            api_key=emulator.api_key,
            base_url=base_url,
            display="quiet",
            report=False,
        )
        buffer = io.StringIO()
        return await run_batch(settings, Console(file=buffer, width=300)), buffer.getvalue()

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        wrong = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert (await run(wrong))[0] == 2
    assert (await run(emulator.url))[0] == 0
    code, printed = await run(wrong)
    assert code == 2
    assert "the API address (--base-url) changed" in printed


async def test_a_restart_waits_for_the_window_its_predecessor_filled(
    emulator: Emulator, tmp_path: Path
) -> None:
    """25 rows sent just now by a dead run: a re-run sends nothing until they leave the
    window, so its fresh limiter meets no 429."""
    catalog = write_catalog(tmp_path, 30, models=6)
    out = tmp_path / "out"
    staged = time.time()
    with Journal.open(out, meta=_meta(catalog, emulator), rows=load_catalog(catalog).rows) as j:
        for row in range(1, 26):
            j.sending(row)
            j.ended(row, "failed", "PipelineError", "staged: sent by the previous run")
    code, _ = await _run(emulator, catalog, out)
    # The journal dates sends in wall-clock time, the limiter waits in (fast-forwarded)
    # loop time: the sends were at most this many real seconds old when the restart
    # seeded its limiter, however loaded the machine.
    at_most_old = time.time() - staged
    assert code == 1  # the 25 staged failures stay failed
    report = emulator.report()
    assert len(report.accepted) == 5
    window = 60.0 + 0.25  # the API's period plus the client's margin
    assert min(a.time for a in report.accepted) >= window - at_most_old
    assert sum(report.rejected.values()) == 0


@pytest.mark.emulator(in_flight_limit=None)
async def test_a_restart_dates_its_predecessors_sends_by_their_answers(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """25 POSTs the server acted on 5 s after the journal wrote them (a slow upload, a
    slow server): a restart right after dates them by their answers, not by their
    ``submitting`` writes, and its first POST meets no 429."""
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(time, "time", lambda: 1.7e9 + loop.time())  # wall clock, on loop time
    catalog = write_catalog(tmp_path, 30, models=6)
    out = tmp_path / "out"
    loaded = load_catalog(catalog)
    emulator.inject(HttpFault("slow", route="run", delay=5.0, times=25))
    with Journal.open(out, meta=_meta(catalog, emulator), rows=loaded.rows) as journal:
        async with AsyncFashn(
            api_key=emulator.api_key, base_url=emulator.url, limits=Limits(in_flight=None)
        ) as client:

            async def send(row: Any) -> None:
                journal.sending(row.row)
                journal.submitted(row.row, (await client.submit(row.request)).id)

            async with anyio.create_task_group() as group:
                for row in loaded.rows[:25]:
                    group.start_soon(send, row)
    acted = max(a.time for a in emulator.report().accepted)
    code, printed = await _run(emulator, catalog, out)
    report = emulator.report()
    assert sum(report.rejected.values()) == 0, report.rejected
    assert code == 0, printed
    assert len(report.accepted) == 30
    later = sorted(a.time for a in report.accepted)[25:]
    assert min(later) >= acted + 60.0  # out of the server's window


def test_a_send_is_dated_by_its_answer_or_the_latest_it_could_have_counted() -> None:
    """Answered: when the answer came. Unanswered (a run died mid-POST): the request's
    timeout after it went out (a server slow to act counts it then, even after a
    restart); never before it went out."""
    assert counted_at(100.0, 103.5, timeout=60.0) == 103.5
    assert counted_at(100.0, None, timeout=60.0) == 160.0
    assert counted_at(100.0, 99.0, timeout=60.0) == 100.0  # a clock set back


def test_a_restart_seeds_sends_dated_ahead_up_to_the_timeout() -> None:
    """A send dated after now (unanswered, the server may count it later) gets a negative
    age, down to ``-ahead``; one further ahead (a clock set back) counts as ``-ahead``."""
    assert carryover([(130.0, 1), (500.0, 1)], now=120.0, ahead=60.0) == [(-10.0, 1), (-60.0, 1)]


def test_a_restart_seeds_its_limiter_with_the_ages_of_earlier_sends() -> None:
    """Earlier sends' wall-clock times become (age, generations) for the limiter's seed;
    one dated in the future (a clock set back) counts as sent now."""
    sent = [(100.0, 1), (40.0, 2), (130.0, 1)]
    assert carryover(sent, now=120.0) == [(20.0, 1), (80.0, 2), (0.0, 1)]


def test_the_journal_keeps_every_send_for_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every POST is kept apart from its row: a reset (a canceled row put back to pending,
    as a stop does) clears the row's sent_at but not its send, which a restart seeds its
    submit window with; sends older than an hour are forgotten when a run begins."""
    catalog = write_catalog(tmp_path, 3, models=3)
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    with Journal.open(tmp_path / "out", meta={}, rows=load_catalog(catalog).rows) as journal:
        journal.sending(1)
        clock[0] += 5.0
        journal.sending(2)
        journal.reset([1, 2], "canceled by a stop")
        assert all(record.sent_at is None for record in journal.records())
        assert journal.sends() == [(1, 1_000_000.0, 1_000_005.0), (2, 1_000_005.0, 1_000_005.0)]
        clock[0] += 3597.0  # the first send is now 3602 s old, the second 3597 s
        journal.sending(3)
        journal.begin_run()
        assert journal.sends() == [(2, 1_000_005.0, 1_000_005.0), (3, clock[0], None)]


@pytest.mark.parametrize("left", ["row00001_0a1b2c3d_0.png", "row123456_ffffffff_1.jpg"])
def test_an_earlier_jobs_outputs_without_its_journal_are_refused(tmp_path: Path, left: str) -> None:
    """Its journal, manifest and report deleted, its outputs kept (the third break-it
    helper: the re-run started afresh and paid for 11 rows again): refused, naming them.
    Other images in the folder (not named as a job names its outputs) are no earlier
    job's."""
    rows = load_catalog(write_catalog(tmp_path, 2, models=2)).rows
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo_0.png").write_bytes(b"x")
    Journal.open(out, meta={}, rows=rows).close()  # other images: a fresh job starts
    for name in [p.name for p in out.iterdir()]:
        if name != "photo_0.png":
            (out / name).unlink()
    (out / left).write_bytes(b"x")
    with pytest.raises(errors.ConfigurationError, match=f"earlier job's outputs \\({left}"):
        Journal.open(out, meta={}, rows=rows)


@pytest.mark.parametrize("journal", ["emptied", "deleted", "damaged"])
def test_an_earlier_jobs_folder_without_its_journal_is_refused(
    tmp_path: Path, journal: str
) -> None:
    """A folder holding an earlier job's manifest and report beside an empty, missing or
    damaged journal: refused (its rows may be paid for), never started afresh."""
    from fashn_async.bulk._folder import EARLIER_JOB_FILES
    from fashn_async.bulk._manifest import MANIFEST_NAME
    from fashn_async.bulk._report import REPORT_NAME

    assert {MANIFEST_NAME, REPORT_NAME} <= set(EARLIER_JOB_FILES)
    catalog = write_catalog(tmp_path, 2, models=2)
    rows = load_catalog(catalog).rows
    out = tmp_path / "out"
    with Journal.open(out, meta={}, rows=rows) as first:
        first.sending(1)
    (out / MANIFEST_NAME).write_text("{}\n")
    path = out / "journal.sqlite3"
    for extra in out.glob("journal.sqlite3-*"):
        extra.unlink()
    if journal == "emptied":
        path.write_bytes(b"")
    elif journal == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    match = "is damaged" if journal == "damaged" else "earlier job's .*manifest.jsonl"
    with pytest.raises(errors.ConfigurationError, match=match):
        Journal.open(out, meta={}, rows=rows)


async def test_model_name_sends_inputs_and_output_format(
    emulator: Emulator, tmp_path: Path
) -> None:
    """--model-name tryon-v1.6 --output-format jpeg: current-shape bodies, JPEG outputs."""
    write_catalog(tmp_path, 2, models=2)
    catalog = tmp_path / "current.jsonl"
    rows = [
        {"model_image": f"images/model_{n}.png", "garment_image": "images/garment_0.png",
         "category": "auto", "mode": "quality"}
        for n in range(2)
    ]  # fmt: skip
    catalog.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    settings = BatchSettings(
        catalog=catalog,
        options=JobOptions(out=out),
        api_key=emulator.api_key,
        base_url=emulator.url,
        model_name="tryon-v1.6",
        output_format="jpeg",
        display="quiet",
        report=False,
    )
    assert await run_batch(settings, Console(file=io.StringIO())) == 0
    assert {a.model_name for a in emulator.report().accepted} == {"tryon-v1.6"}
    for entry in read_manifest(out):
        (name,) = entry["files"]
        assert name.endswith(".jpg")
        with Image.open(out / name) as image:
            assert image.format == "JPEG"


def _rewrite(catalog: Path, rows: list[dict[str, str]]) -> None:
    columns = ["id", "model_image", "garment_image", "category"]
    with catalog.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)


async def test_catalog_edits_between_runs(emulator: Emulator, tmp_path: Path) -> None:
    """Rows are known by id: a bad row fixed, a row added and one removed before they
    were sent are taken as they are now; a done row keeps its record when edited (the edit
    reported, nothing re-sent) or moved; one removed after it was sent stays listed."""
    catalog = write_catalog(
        tmp_path, 4, models=2,
        extra=[{"id": "typo", "model_image": "images/model_0.png",
                "garment_image": "images/garment_0.png", "category": "topz"}],
    )  # fmt: skip
    out = tmp_path / "out"
    code, _ = await _run(emulator, catalog, out)
    assert code == 1  # the typo row is invalid
    with catalog.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows[4]["category"] = "tops"  # the typo fixed
    rows[0]["category"] = "one-pieces"  # sku-1 edited after it was done
    del rows[1]  # sku-2, done, removed
    rows.insert(0, {**rows[2], "id": "sku-new", "garment_image": "images/garment_1.png"})
    _rewrite(catalog, rows)
    code, printed = await _run(emulator, catalog, out)
    assert code == 0, printed
    assert "line 3, id 'sku-1' changed after it was sent (done)" in printed
    gone = "the row with id 'sku-2' (line 3 when last read) is no longer in the catalog"
    assert f"{gone}; it was already sent (done)" in printed
    # Again, quiet: the warnings still reach the person; the row gone twice is named by
    # its id and line, never by its (lost) place in the file.
    code, printed = await _run(emulator, catalog, out, display="quiet")
    assert code == 0, printed
    assert "changed after it was sent (done)" in printed
    assert gone in printed
    assert "row None" not in printed
    assert "progress" not in printed
    manifest = read_manifest(out)
    by_id = {e["id"]: e for e in manifest}
    assert [e["id"] for e in manifest] == ["sku-new", "sku-1", "sku-3", "sku-4", "typo", "sku-2"]
    assert [e["row"] for e in manifest] == [1, 2, 3, 4, 5, None]
    assert by_id["sku-1"]["inputs"]["category"] == "tops"  # as it was sent
    assert {e["status"] for e in manifest} == {"done"}
    assert len(emulator.report().accepted) == 4 + 2  # the new row and the fixed one


async def test_a_done_row_whose_input_is_gone_prints_no_warning(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A done row whose input file was deleted since: no stale 'no such file' line; it
    stays done."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    assert (await _run(emulator, catalog, out))[0] == 0
    (tmp_path / "images" / "model_1.png").unlink()
    code, printed = await _run(emulator, catalog, out)
    assert code == 0, printed
    assert "no such file" not in printed
    assert {e["status"] for e in read_manifest(out)} == {"done"}


async def test_every_file_the_job_leaves_is_documented(emulator: Emulator, tmp_path: Path) -> None:
    """Each name a job leaves in --out (the lock and reserve files too) is explained in
    the README's bulk section."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    settings = BatchSettings(
        catalog=catalog,
        options=JobOptions(out=out),
        api_key=emulator.api_key,
        base_url=emulator.url,
        display="quiet",
    )
    assert await run_batch(settings, Console(file=io.StringIO())) == 0
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bulk jobs from the command line", 1)[1].split("\n## ", 1)[0]
    for path in out.iterdir():
        name = path.name
        if name.startswith("row"):
            name = "row00042_1f3a9c0d_0.png"  # the outputs, by their documented pattern
        elif name.startswith("journal.sqlite3"):
            name = "journal.sqlite3"  # with SQLite's -wal and -shm beside it
        assert f"`{name}" in section, f"{path.name} is not documented in the README"


async def test_an_awaitable_sending_hook_is_awaited_before_the_post(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The journal's `submitting` write may run off the event loop: a hook returning an
    awaitable holds the POST until it is done (the emulator sees nothing before)."""
    catalog = write_catalog(tmp_path, 3, models=3)
    requests = [row.request for row in load_catalog(catalog).rows]
    seen: list[int] = []  # submissions the emulator had accepted as each write ended

    async def write(index: int) -> None:
        await anyio.sleep(5.0)  # a slow disk
        seen.append(len(emulator.report().accepted))

    async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
        async for result in client.batch(requests, on_sending=write):
            assert result.ok
    assert len(emulator.report().accepted) == len(seen) == 3
    # When the n-th write ends, at most the n-1 items written before it were posted.
    assert all(accepted <= n for n, accepted in enumerate(seen)), seen


async def test_the_submitting_write_runs_off_the_event_loop(tmp_path: Path) -> None:
    """Journal.sending_off_loop writes in a worker thread: the loop keeps running while
    it fsyncs, and the row is `submitting` on disk once it returns."""
    catalog = write_catalog(tmp_path, 1, models=1)
    with Journal.open(tmp_path / "out", meta={}, rows=load_catalog(catalog).rows) as journal:
        threads: list[str] = []
        real = journal._db

        class Spy:  # the connection, noting the thread each statement runs on
            def execute(self, *args: Any) -> Any:
                threads.append(threading.current_thread().name)
                return real.execute(*args)

        journal._db = Spy()  # type: ignore[assignment]
        await journal.sending_off_loop(1)
        journal._db = real
        assert threads
        assert threading.main_thread().name not in threads
    assert journal_counts(tmp_path / "out") == {"submitting": 1}


async def test_a_journal_of_the_previous_schema_resumes(emulator: Emulator, tmp_path: Path) -> None:
    """A journal written by 0.1 (rows known by number only) is migrated: its done rows
    stay done, the rest run, nothing is sent twice."""
    catalog = write_catalog(tmp_path, 3, models=3)
    out = tmp_path / "out"
    assert (await _run(emulator, catalog, out))[0] == 0
    with sqlite3.connect(out / "journal.sqlite3") as db:  # back to schema 1
        db.execute("ALTER TABLE rows DROP COLUMN identity")
        db.execute("ALTER TABLE rows DROP COLUMN position")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
        db.execute("UPDATE rows SET state = 'pending', prediction_id = NULL WHERE row = 3")
    db.close()
    code, printed = await _run(emulator, catalog, out)
    assert code == 0, printed
    manifest = read_manifest(out)
    assert [(e["row"], e["id"], e["status"]) for e in manifest] == [
        (1, "sku-1", "done"), (2, "sku-2", "done"), (3, "sku-3", "done")
    ]  # fmt: skip
    assert len(emulator.report().accepted) == 4  # row 3 sent again, as its journal said


async def test_a_repeated_row_without_an_id_is_not_paid_for_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A catalog row that repeats an earlier one's request, with no id (a row pasted
    twice): the same result would be paid for again (the seed, 42 by default, makes it
    the same), so it is a bad row naming the first, never sent (it was sent and paid
    for); given an id, it is sent; with the first removed, it is that row, not sent."""
    catalog = write_catalog(tmp_path, 2, models=2)  # (sku-1: tops, sku-2: bottoms)
    text = catalog.read_text(encoding="utf-8")
    catalog.write_text(text + ",images/model_0.png,images/garment_0.png,one-pieces\n" * 2)
    out = tmp_path / "out"
    for _ in range(2):
        code, printed = await _run(emulator, catalog, out)
        assert code == 1, printed
        assert "line 5: repeats line 4 (it asks for the same, and has no id): not sent" in printed
        assert len(emulator.report().accepted) == 3
    assert journal_counts(out)["invalid"] == 1
    lines = catalog.read_text(encoding="utf-8").splitlines()
    catalog.write_text("\n".join([*lines[:3], lines[4]]) + "\n")  # the first removed
    code, printed = await _run(emulator, catalog, out)
    assert code == 0, printed
    assert len(emulator.report().accepted) == 3
    catalog.write_text("\n".join([*lines[:4], "again" + lines[4]]) + "\n")  # an id
    code, printed = await _run(emulator, catalog, out)
    assert code == 0, printed
    assert len(emulator.report().accepted) == 4


#: A row of the catalogs below: one request (a path with ``./`` is the same).
ROW = "images/model_0.png,images/garment_0.png,tops"


@pytest.mark.parametrize(
    "then",
    [[f"./{ROW}", ROW], [f"./{ROW}"], [f"sku1,{ROW}"], [f"sku1,{ROW}", f"./{ROW}"]],
    ids=["swapped", "the first removed", "the first given an id", "after an id"],
)
async def test_a_repeat_is_never_paid_for_whatever_the_edit_after_it(
    emulator: Emulator, tmp_path: Path, then: list[str]
) -> None:
    """A request sent once stays paid for once whatever is done to the two rows asking
    it (a helper's finding on the first form: each edit here paid it twice, the
    repeat's record taken by identity leaving the good row to be sent again); a row
    with no id repeating a row with an id is a repeat too."""
    write_catalog(tmp_path, 1, models=1)
    catalog = tmp_path / "catalog.csv"
    header = "model_image,garment_image,category"
    catalog.write_text(f"{header}\n{ROW}\n./{ROW}\n")
    out = tmp_path / "out"
    code, printed = await _run(emulator, catalog, out)
    assert code == 1, printed
    if any(line.startswith("sku1") for line in then):  # an id column: ids of none empty
        header, then = f"id,{header}", [line if "sku1" in line else f",{line}" for line in then]
    catalog.write_text("\n".join([header, *then]) + "\n")
    code, printed = await _run(emulator, catalog, out)
    assert code == (1 if len(then) == 2 else 0), printed
    assert len(emulator.report().accepted) == 1


async def test_ids_like_a_repeats_suffix_are_never_charged_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Rows with ids a, a, a#2: all three sent once; re-running the unchanged catalog
    sends nothing (no identity shared, so no row forgotten by the journal)."""
    write_catalog(tmp_path, 1)
    catalog = tmp_path / "catalog.csv"
    _rewrite(
        catalog,
        [
            {"id": name, "model_image": "images/model_0.png",
             "garment_image": "images/garment_0.png", "category": category}
            for name, category in (("a", "tops"), ("a", "bottoms"), ("a#2", "one-pieces"))
        ],
    )  # fmt: skip
    out = tmp_path / "out"
    code, printed = await _run(emulator, catalog, out)
    assert code == 0, printed
    assert len(emulator.report().accepted) == 3
    for _ in range(2):
        code, printed = await _run(emulator, catalog, out)
        assert code == 0, printed
        assert len(emulator.report().accepted) == 3
    assert [e["id"] for e in read_manifest(out)] == ["a", "a", "a#2"]


@pytest.mark.parametrize(
    ("error", "prediction_id", "stopping", "outcome"),
    [
        (JournalWriteError("disk full"), None, False, Outcome.NEVER_SENT),
        (errors.PredictionCanceledError("canceled"), "p1", True, Outcome.CANCELED_BY_STOP),
        (errors.PredictionCanceledError("canceled"), "p1", False, Outcome.SEND_AGAIN),
        (errors.SubmissionUncertainError("no answer"), None, False, Outcome.UNCERTAIN),
        (errors.InvalidRequestError("bad seed"), None, False, Outcome.INVALID),
        (errors.BadRequestError("refused"), None, False, Outcome.FAILED),
        (errors.OutOfCreditsError("no credits"), None, False, Outcome.NOT_CREATED),
        (errors.ServerError("5xx"), None, False, Outcome.NOT_CREATED),
        (errors.PoseError("no pose"), "p1", False, Outcome.FAILED),
        (errors.PoseError("no pose"), "p1", True, Outcome.FAILED),
    ],
)
def test_what_becomes_of_a_row_whose_result_is_an_error(
    error: errors.FashnError, prediction_id: str | None, stopping: bool, outcome: Outcome
) -> None:
    """A failed result's row: never sent (journal refused), canceled by this stop or sent
    again, uncertain, invalid, not created (nothing charged: pending), or failed."""
    assert failure_outcome(error, prediction_id, stopping=stopping) is outcome


def test_the_manifest_is_strict_json(tmp_path: Path) -> None:
    """An invalid row holding NaN or infinities (as read from JSONL): the manifest line is
    strict JSON, the values shown as text."""
    from fashn_async.bulk._manifest import write_manifest

    catalog = tmp_path / "c.jsonl"
    catalog.write_text('{"model_image": "m.png", "garment_image": "g.png", "seed": NaN, '
                       '"note": -Infinity, "x": [1e400]}\n')  # fmt: skip
    with Journal.open(tmp_path / "out", meta={}, rows=load_catalog(catalog).rows) as journal:
        path = write_manifest(tmp_path / "out", journal.records())
    line = path.read_text().splitlines()[0]
    entry = json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name}"))
    assert entry["status"] == "invalid"
    assert "NaN" in line
    assert "Infinity" in line


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ({}, {"model_image": "./images/model_0.png"}),  # another path to the same file
        ({}, {"seed": "42"}),  # the default written out
        ({"seed": ""}, {"nsfw_filter": "true"}),  # a default left empty, another written
        ({}, {"garment_image": "images//garment_0.png"}),
    ],
    ids=["./path", "default seed", "empty and written defaults", "double slash"],
)
async def test_a_repeat_written_another_way_is_never_paid_for(
    emulator: Emulator, tmp_path: Path, first: dict[str, str], again: dict[str, str]
) -> None:
    """Rows with no id that ask for the same request however written (another path to
    the same file, a default written out or left empty) are repeats: the dry run and the
    job name the second as a bad row, and only the first is sent (the check compared
    the text and named none of these; then both were sent, and paid for)."""
    base = {"model_image": "images/model_0.png", "garment_image": "images/garment_0.png"}
    base["category"] = "tops"
    rows = [{**base, **first}, {**base, **again}]
    catalog = write_catalog(tmp_path, 1, models=1)
    columns = ["model_image", "garment_image", "category", "seed", "nsfw_filter"]
    with catalog.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    said: list[str] = []
    settings = BatchSettings(catalog=catalog, options=JobOptions(out=tmp_path / "out"))
    assert dry_run(settings, said.append) == 1
    named = f"{catalog}: line 3: repeats line 2 (it asks for the same, and has no id)"
    assert any(line.startswith(named) for line in said), said
    code, printed = await _run(emulator, catalog, tmp_path / "out")
    assert code == 1, printed
    assert named in printed
    assert len(emulator.report().accepted) == 1


async def test_a_value_with_control_characters_neither_splits_a_line_nor_drives_the_terminal(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A catalog value with a newline or an escape sequence (a quoted CSV cell, a file
    name) is printed with its controls escaped: it cannot split the job's lines into a
    forged one, nor recolour or retitle the terminal (rich passes ESC through)."""
    catalog = write_catalog(tmp_path, 1, models=1)
    evil = "images/mod\nstopped: forged\x1b]0;title\x07\x1b[31m\u202egnp.png"
    with catalog.open("a", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(["sku-x", evil, "images/garment_0.png", "tops"])
    code, printed = await _run(emulator, catalog, tmp_path / "out")
    assert code == 1, printed
    assert "\x1b" not in printed
    assert "\u202e" not in printed  # (a right-to-left override reorders what a line shows)
    assert "\\x1b]0;title\\x07\\x1b[31m\\u202egnp" in printed
    assert not [line for line in printed.splitlines() if line.startswith("stopped: forged")]


async def test_a_whole_number_in_jsonl_asks_what_its_float_does(
    emulator: Emulator, tmp_path: Path
) -> None:
    """JSONL keeps ``2`` an integer where the option is a number (``guidance_scale``):
    read as ``2.0``, it asks for what ``2.0`` and the default do, so a catalog
    re-exported by a tool that writes ``2`` (JavaScript, jq) is not paid for again, and
    the two spellings in one catalog are named as a repeat (the second run paid again)."""
    write_catalog(tmp_path, 1, models=1)  # the images
    row = {"model_image": "images/model_0.png", "garment_image": "images/garment_0.png"}
    row["category"] = "tops"
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({**row, "guidance_scale": 2.0}) + "\n", encoding="utf-8")
    code, printed = await _run(emulator, catalog, tmp_path / "out")
    assert code == 0, printed
    catalog.write_text(json.dumps({**row, "guidance_scale": 2}) + "\n", encoding="utf-8")
    code, printed = await _run(emulator, catalog, tmp_path / "out")
    assert code == 0, printed
    assert len(emulator.report().accepted) == 1
    both = [json.dumps({**row, "guidance_scale": value}) for value in (2, 2.0)]
    catalog.write_text("\n".join(both) + "\n", encoding="utf-8")
    said: list[str] = []
    assert (
        dry_run(BatchSettings(catalog=catalog, options=JobOptions(out=tmp_path / "o")), said.append)
        == 1
    )
    assert any("line 2: repeats line 1" in line for line in said), said
