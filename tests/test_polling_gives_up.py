"""A created prediction whose status calls keep failing: PollingError names it, and
nothing cancels it (it may be done, and charged), in run(), wait(), batch() and the bulk
job, for every way a status call can fail (tests/test_network_faults.py has one failure
that is retried and passes)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import attrs
import pytest
from rich.console import Console

from fashn_async import AsyncFashn, Limits, Prediction, RetryPolicy, TryOnRequest, errors
from fashn_async.bulk import Journal, load_catalog
from fashn_async.bulk._command import BatchSettings, run_batch
from fashn_async.bulk._outcome import JobOptions
from fashn_async.testing import Emulator, HttpFault
from tests.bulk_support import journal_counts, write_catalog

#: Each way a status call can fail for good, with the HTTP status the error keeps.
FAILURES: dict[str, tuple[dict[str, Any], int | None]] = {
    "gateway 502 page": ({"kind": "gateway_before", "status": 502}, 502),
    "API-shaped 503": ({"kind": "error_5xx", "status": 503}, 503),
    "429 past rate_limit_waits": ({"kind": "throttle", "retry_after": "1"}, 429),
    "not tracked (404)": ({"kind": "untracked"}, 404),
    "not JSON": ({"kind": "not_json"}, 200),
    "truncated body": ({"kind": "truncated"}, None),
    "connection dropped": ({"kind": "drop_before"}, None),
    "malformed status line": ({"kind": "bad_status_line"}, None),
    "about another prediction": ({"kind": "other_id"}, 200),
}
FAST_GIVE_UP = RetryPolicy(attempts=2, rate_limit_waits=1)


def request_for(emulator: Emulator) -> TryOnRequest:
    return TryOnRequest(
        model_image=emulator.sample_image_url("model"),
        garment_image=emulator.sample_image_url("garment"),
        category="tops",
    )


def fail_status(emulator: Emulator, fault: dict[str, Any]) -> None:
    """Every status call fails, and so does every cancel (a cancel sent would show)."""
    emulator.inject(HttpFault(route="status", **fault))
    emulator.inject(HttpFault("gateway_before", route="cancel", status=502))


def assert_left_alone(emulator: Emulator, error: errors.PollingError, status: int | None) -> None:
    report = emulator.report()
    assert [s.id for s in report.accepted] == [error.prediction_id]
    assert report.requests_by_route.get("cancel", 0) == 0  # not even tried
    assert report.cancels == []
    if status is not None and status != 200:
        assert error.status_code == status
    assert isinstance(error.__cause__, errors.FashnError)
    assert error.prediction_id is not None
    assert error.prediction_id in str(error)
    assert "not cancelled" in error.message


@pytest.mark.client(retry=FAST_GIVE_UP)
@pytest.mark.parametrize("failure", list(FAILURES))
async def test_run_raises_polling_error_naming_the_prediction_and_cancels_nothing(
    client: AsyncFashn, emulator: Emulator, failure: str
) -> None:
    """run(): the error names the created prediction, which is left running; wait()
    collects it once the status route answers again."""
    fault, status = FAILURES[failure]
    fail_status(emulator, fault)
    with pytest.raises(errors.PollingError) as info:
        await client.run(request_for(emulator))
    assert_left_alone(emulator, info.value, status)
    emulator.clear_faults()
    assert info.value.prediction_id is not None
    final = await client.wait(info.value.prediction_id)
    assert final.status == "completed"


@pytest.mark.client(retry=FAST_GIVE_UP)
@pytest.mark.parametrize("failure", ["gateway 502 page", "not tracked (404)"])
async def test_wait_and_batch_items_raise_polling_error_and_cancel_nothing(
    client: AsyncFashn, emulator: Emulator, failure: str
) -> None:
    """client.wait(id), and batch items (new and ``Prediction(id)``): the same."""
    fault, status = FAILURES[failure]
    earlier = await client.submit(request_for(emulator))
    fail_status(emulator, fault)
    with pytest.raises(errors.PollingError) as info:
        await client.wait(earlier.id)
    assert info.value.prediction_id == earlier.id
    async with client.batch([request_for(emulator), Prediction(earlier.id)]) as batch:
        results = sorted([r async for r in batch], key=lambda r: r.index)
    for result in results:
        assert isinstance(result.error, errors.PollingError)
        assert result.prediction_id == result.error.prediction_id
        if status is not None:
            assert result.error.status_code == status
    report = emulator.report()
    assert len(report.accepted) == 2  # the earlier one and the batch's new one
    assert results[1].prediction_id == earlier.id
    assert report.requests_by_route.get("cancel", 0) == 0


def bulk_settings(emulator: Emulator, catalog: Path, out: Path) -> BatchSettings:
    """A quiet bulk job with --retry-failed, whose polling gives up fast."""
    return BatchSettings(
        catalog=catalog,
        options=JobOptions(out=out, retry_failed=True),
        api_key=emulator.api_key,
        base_url=emulator.url,
        display="quiet",
        report=False,
        retry=FAST_GIVE_UP,
    )


async def run_job(settings: BatchSettings) -> tuple[int, str]:
    """Run it; its exit code and what it printed."""
    console = Console(file=io.StringIO(), width=200)
    code = await run_batch(settings, console)
    return code, console.file.getvalue()  # type: ignore[attr-defined]


async def test_bulk_rows_whose_polling_gave_up_are_collected_by_a_rerun(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Bulk: status 502s for good leave the rows ``submitted`` (never ``failed``, which
    --retry-failed would pay for again); the plain re-run collects them, sending nothing."""
    out = tmp_path / "out"
    settings = bulk_settings(emulator, write_catalog(tmp_path, 3, models=1), out)
    fail_status(emulator, {"kind": "gateway_before", "status": 502})
    code, said = await run_job(attrs.evolve(settings, report=True))
    assert code == 1
    assert journal_counts(out) == {"submitted": 3}
    assert "3 submitted rows not collected yet: run the same command again" in said
    assert "not charged" not in said
    page = (out / "report.html").read_text()  # they are listed as not done, and why
    assert "<h2>Not done (3)</h2>" in page
    not_done = page.split("<h2>All rows")[0]
    assert not_done.count("not collected yet: run the same command again") == 3
    emulator.clear_faults()
    code, _ = await run_job(settings)
    assert code == 0
    assert journal_counts(out) == {"done": 3}
    report = emulator.report()
    assert len(report.accepted) == 3
    assert report.duplicates == 0
    assert report.cancels == []


async def test_bulk_rows_are_uncertain_only_after_a_second_404(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Bulk: a 404 may be passing: the row stays ``submitted`` and the next run polls it
    again; only a second 404 makes it ``uncertain`` (it may be done and charged, so only
    --resend-uncertain sends it again), even with --retry-failed. One 404 that passes:
    collected, paid once."""
    out = tmp_path / "out"
    settings = bulk_settings(emulator, write_catalog(tmp_path, 2, models=1), out)

    fail_status(emulator, {"kind": "untracked"})
    assert (await run_job(settings))[0] == 1
    assert journal_counts(out) == {"submitted": 2}
    for _ in range(2):  # the second 404, then a run that sends nothing again
        code, said = await run_job(settings)
        assert code == 1
        assert journal_counts(out) == {"uncertain": 2}
        said = " ".join(said.split())  # the console wraps long lines
        assert "POST may have landed" not in said  # it did land: it has an id
    assert "2 uncertain rows, not re-sent: the API no longer finds their predictions" in said
    assert len(emulator.report().accepted) == 2

    emulator.clear_faults()
    again = tmp_path / "again"
    # A 404 is believed once a connection of its own gives it too (times=2): one in
    # progress at a time, so both reach the same row.
    settings = attrs.evolve(settings, options=JobOptions(out=again), limits=Limits(in_flight=1))
    emulator.inject(HttpFault("untracked", route="status", times=2))
    assert (await run_job(settings))[0] == 1  # one row met the passing 404
    assert journal_counts(again) == {"done": 1, "submitted": 1}
    assert (await run_job(settings))[0] == 0
    assert journal_counts(again) == {"done": 2}
    report = emulator.report()
    assert len(report.accepted) == 4  # 2 per folder (the same catalog: sent once each)
    assert report.requests_by_route["run"] == 4


async def test_a_second_round_of_the_same_run_leaves_a_gave_up_row_to_the_rerun(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A row whose polling gave up on a 404 is not polled again in a later round of the
    same run (one started by a row found canceled, sent again): two 404s milliseconds
    apart prove nothing, so it stays ``submitted`` for the re-run, never ``uncertain``."""
    out = tmp_path / "out"
    settings = bulk_settings(emulator, write_catalog(tmp_path, 2, models=2), out)
    loaded = load_catalog(settings.catalog)
    meta = {"base_url": emulator.url, "model_name": None, "output_format": None}
    with Journal.open(out, meta=meta, rows=loaded.rows) as journal:
        async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
            first, second = loaded.rows
            assert first.request is not None
            journal.sending(first.row)
            canceled = await client.submit(first.request)
            journal.submitted(first.row, canceled.id)
            await client.cancel(canceled.id)  # by hand: the job sends it again
            journal.sending(second.row)
            journal.submitted(second.row, "gone-from-the-api")  # its status answers 404
    code, said = await run_job(settings)
    assert code == 1
    assert journal_counts(out) == {"done": 1, "submitted": 1}
    assert "uncertain" not in said
    assert len(emulator.report().accepted) == 2  # the canceled row sent again, once


@pytest.mark.emulator(latency=(50.0, 60.0))
async def test_a_row_canceled_again_is_left_canceled_not_sent_without_end(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A server (an operator, another tool) that cancels every prediction it creates: a
    row found canceled is sent again once in a run, then left ``canceled`` for a re-run,
    so the run ends (it used to send again round after round, 339 POSTs in 10 s)."""
    out = tmp_path / "out"
    settings = bulk_settings(emulator, write_catalog(tmp_path, 1, models=1), out)

    async def cancel_each(client: AsyncFashn) -> None:
        canceled: set[str] = set()
        while True:
            for accepted in emulator.report().accepted:
                if accepted.id not in canceled:
                    canceled.add(accepted.id)
                    await client.cancel(accepted.id)
            await asyncio.sleep(0.5)

    async with AsyncFashn(api_key=emulator.api_key, base_url=emulator.url) as client:
        canceller = asyncio.ensure_future(cancel_each(client))
        try:
            assert (await run_job(settings))[0] == 1
            assert journal_counts(out) == {"canceled": 1}
            assert len(emulator.report().accepted) == 2  # the first send, then once more
            assert (await run_job(settings))[0] == 1  # a re-run: once more, no more
            assert journal_counts(out) == {"canceled": 1}
            assert len(emulator.report().accepted) == 3
        finally:
            canceller.cancel()


@pytest.mark.emulator(in_flight_limit=1)
@pytest.mark.client(retry=FAST_GIVE_UP, limits=Limits(in_flight=1))
async def test_a_prediction_left_running_keeps_its_slot_until_it_likely_ended(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """The server counts a prediction polling gave up on as in progress: its in-flight
    slot stays taken until it has likely ended, so the next run() draws no 429."""
    emulator.inject(HttpFault("untracked", route="status", times=2))  # and its check
    with pytest.raises(errors.PollingError):
        await client.run(request_for(emulator))
    await client.run(request_for(emulator))
    report = emulator.report()
    assert report.requests_by_route["run"] == 2  # no POST refused for concurrency
    assert len(report.accepted) == 2
