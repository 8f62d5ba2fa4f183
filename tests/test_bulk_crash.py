"""The bulk CLI killed and interrupted for real: SIGKILL at random moments, then SIGINT.

A standalone emulator (its own process, limits on, time x100) outlives every CLI run,
so what it saw is the truth about what was submitted and paid.
"""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.bulk_support import (
    KEY,
    cli,
    cli_env,
    control,
    journal_counts,
    read_manifest,
    row_digests,
    run_cli,
    standalone_emulator,
    write_catalog,
)

pytestmark = pytest.mark.looptime(False)  # real processes, real time

SCALE = "0.01"


def _batch_args(catalog: Path, out: Path, url: str, *more: str) -> list[str]:
    return [
        "batch", str(catalog), "--out", str(out), "--base-url", url, "--time-scale", SCALE,
        "--progress", "lines", "--log-interval", "0.05", "--no-report", *more,
    ]  # fmt: skip


def _wait_for_work(out: Path, process: subprocess.Popen[bytes]) -> None:
    """Until the job has sent something (or ended), however slow the machine starts it."""
    deadline = time.monotonic() + 30
    before = journal_counts(out)
    while time.monotonic() < deadline and process.poll() is None:
        counts = journal_counts(out)
        if counts and counts.get("pending", 0) < before.get("pending", 201):
            return
        time.sleep(0.02)


@pytest.mark.timeout(120)  # six real CLI processes: a backstop for a loaded machine
def test_sigkill_at_five_random_moments_loses_nothing_and_pays_once(tmp_path: Path) -> None:
    """200 rows, SIGKILL 5 times mid-job: every row once in the manifest, one accepted
    submission per row (uncertain rows at most one, re-sent only with the flag), every
    output a valid image."""
    catalog = write_catalog(tmp_path, 200)
    out = tmp_path / "results"
    rng = random.Random(20240611)
    with standalone_emulator("--time-scale", SCALE) as url:
        args = _batch_args(catalog, out, url)
        progress = []
        for _ in range(5):
            with subprocess.Popen(  # noqa: S603 - our own interpreter and code
                cli(*args),
                env=cli_env(FASHN_API_KEY=KEY),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ) as process:
                _wait_for_work(out, process)  # then a random moment, wherever the job is
                time.sleep(rng.uniform(0.05, 0.9))
                process.send_signal(signal.SIGKILL)
                assert process.wait(timeout=30) == -signal.SIGKILL
            progress.append(journal_counts(out))
        final = run_cli(*args, FASHN_API_KEY=KEY)
        report = control(url, "GET", "/_emulator/report")

        done_after_kills = [counts.get("done", 0) for counts in progress]
        assert done_after_kills == sorted(done_after_kills)  # progress is never undone
        assert done_after_kills[-1] < 200, "the kills came too late to interrupt anything"
        assert any(counts.get("submitted") for counts in progress), "no kill caught a row running"

        manifest = read_manifest(out)
        assert [entry["row"] for entry in manifest] == list(range(1, 201))
        uncertain = {e["row"] for e in manifest if e["status"] == "uncertain"}
        assert {e["status"] for e in manifest} <= {"done", "uncertain"}, final.stderr
        assert final.returncode == (1 if uncertain else 0), final.stderr

        digests = row_digests(catalog)
        per_row = collections.Counter(digests[a["payload_digest"]] for a in report["accepted"])
        for entry in manifest:
            if entry["status"] == "done":
                assert per_row[entry["row"]] == 1, entry
            else:  # killed with its POST on the wire: it may or may not have landed
                assert per_row[entry["row"]] <= 1, entry
        assert report["duplicates"] == 0
        accepted_ids = {a["id"] for a in report["accepted"]}
        assert {e["prediction_id"] for e in manifest if e["status"] == "done"} <= accepted_ids

        if uncertain:  # only the explicit flag sends them again
            again = run_cli(*args, "--resend-uncertain", FASHN_API_KEY=KEY)
            assert again.returncode == 0, again.stderr
            manifest = read_manifest(out)
            report = control(url, "GET", "/_emulator/report")
            assert report["duplicates"] == sum(per_row[row] for row in uncertain)

    assert all(entry["status"] == "done" for entry in manifest)
    for entry in manifest:
        assert len(entry["files"]) == 1
        with Image.open(out / entry["files"][0]) as image:
            image.verify()


@pytest.mark.parametrize("mode", ["cancel", "leave-running", "twice"])
def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(tmp_path: Path, mode: str) -> None:
    """SIGINT mid-job: exit 130, running predictions cancelled on the server (or left
    running with --leave-running), manifest written; a second SIGINT quits at once. The
    same command then finishes, each done row charged once."""
    leave_running = mode == "leave-running"
    catalog = write_catalog(tmp_path, 40)
    out = tmp_path / "results"
    with standalone_emulator("--time-scale", SCALE) as url:
        args = _batch_args(catalog, out, url, *(["--leave-running"] if leave_running else []))
        with subprocess.Popen(  # noqa: S603 - our own interpreter and code
            cli(*args),
            env=cli_env(FASHN_API_KEY=KEY),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            assert process.stderr is not None
            for line in process.stderr:  # wait until rows are running
                if "progress" in line and "running 0 " not in line:
                    break
            time.sleep(0.3)
            process.send_signal(signal.SIGINT)
            if mode == "twice":
                time.sleep(0.005)
                process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "run the same command again to resume" in stderr
        assert journal_counts(out).get("done", 0) < 40
        seen = control(url, "GET", "/_emulator/report")
        cancels = seen["cancels"]
        if leave_running:
            assert cancels == []
        if mode != "twice":  # a second SIGINT may come before the manifest is written
            manifest = read_manifest(out)
            assert len(manifest) == 40
            statuses = {e["status"] for e in manifest}
            if leave_running:
                assert "canceled" not in statuses
            else:  # the journal says what the server says: cancelled
                assert not statuses & {"submitted", "submitting"}, statuses
                assert "canceled" in statuses, statuses
            for entry in (e for e in manifest if e["status"] == "canceled"):
                # cancelled on the server, or it had finished: its result was on its way
                pid = entry["prediction_id"]
                assert pid in cancels or seen["statuses"][pid] == "completed", entry

        final = run_cli(*args, FASHN_API_KEY=KEY)
        report = control(url, "GET", "/_emulator/report")
    manifest = read_manifest(out)
    uncertain = [e for e in manifest if e["status"] == "uncertain"]
    assert final.returncode == (1 if uncertain else 0), final.stderr
    assert all(e["status"] in ("done", "uncertain") for e in manifest)
    # Charged once per done row: cancelled predictions are not charged, and a row whose
    # prediction was left running was collected, not sent again. Only an uncertain row
    # (its POST on the wire when the process quit) may have a charged prediction of its own.
    done = sum(e["status"] == "done" for e in manifest)
    assert done <= report["credits_used"] <= done + len(uncertain)
    if leave_running:
        assert report["duplicates"] == 0


def _posts(url: str) -> int:
    """POST /v1/run requests a standalone emulator has received so far."""
    return int(control(url, "GET", "/_emulator/report")["requests_by_route"].get("run", 0))


@pytest.mark.timeout(120)  # two real CLI runs: a backstop for a loaded machine
def test_a_restart_right_after_sigkill_draws_no_429(tmp_path: Path) -> None:
    """SIGKILL while the first 6 rows (the in-flight cap) are mid-POST, then the same
    command at once: the restart counts the dead run's possibly-running predictions
    against the in-flight cap and draws no 429 of any kind on the emulator's report.

    Deterministic: the emulator holds those 6 POSTs 12 API s before creating their
    predictions (which then run 12-16 API s), and the kill comes once it has all 6, so
    it always finds exactly 6 rows `submitting` and nothing polled; the predictions are
    created after the kill and end by 28 API s after they were sent, inside the
    restart's 33 s bound, whatever the machine's load (a late restart only waits less).
    Without the carry-over the restart's own 6 (12-16 API s each) are still running
    when the dead run's are created (unless it starts 7 real s late): 6 429s (checked
    by disabling the carry-over: ConcurrencyLimitExceeded x6)."""
    catalog = write_catalog(tmp_path, 12)
    out = tmp_path / "results"
    scale = "0.25"
    with standalone_emulator("--time-scale", scale, "--latency", "12,16") as url:
        hold = {"type": "http", "kind": "slow", "route": "run", "delay": 12, "times": 6}
        assert control(url, "POST", "/_emulator/faults", hold) == {"added": 1}
        args = [
            "batch", str(catalog), "--out", str(out), "--base-url", url, "--time-scale", scale,
            "--progress", "quiet", "--no-report",
        ]  # fmt: skip
        with subprocess.Popen(  # noqa: S603 - our own interpreter and code
            cli(*args),
            env=cli_env(FASHN_API_KEY=KEY),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as process:
            try:
                deadline = time.monotonic() + 60
                # Until the emulator holds all 6 POSTs (a `submitting` row's POST may not
                # be on the wire yet: wait for the server's count, not the journal's).
                while _posts(url) < 6:
                    assert time.monotonic() < deadline, "the job never sent its first 6 rows"
                    assert process.poll() is None, "the job ended before the kill"
                    time.sleep(0.01)
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
        assert journal_counts(out) == {"submitting": 6, "pending": 6}  # killed mid-POST
        restart = run_cli(*args, FASHN_API_KEY=KEY, timeout=90)
        report = control(url, "GET", "/_emulator/report")
    assert restart.returncode == 1, restart.stderr  # the rows caught mid-POST: uncertain
    assert report["rejected"] == {}, report["rejected"]
    assert len(report["accepted"]) == 12  # the dead run's 6 were created, and 6 more
    statuses = [e["status"] for e in read_manifest(out)]
    assert sorted(statuses) == ["done"] * 6 + ["uncertain"] * 6
