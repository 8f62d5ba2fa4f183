"""``fashn-async batch``: a catalog, its journal, the client and the job, put together.

Exit codes: 0 every row done; 1 some rows failed, are uncertain or still to do (a dry
run: some rows are bad); 2 the job could not start (bad catalog or options, no key, a
journal of another job, an unwritable --out, the API unreachable or refusing the key),
or a disk problem stopped it; 130 stopped by Ctrl-C or SIGTERM (run the same command
again to resume after either stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from fashn_async._client import AsyncFashn
from fashn_async._limits import Limits
from fashn_async._options import UNUSED_KEY
from fashn_async._polling import Polling
from fashn_async._redact import shown_url
from fashn_async._retry import RetryPolicy
from fashn_async._sources import in_worker
from fashn_async._validators import visible
from fashn_async.bulk._catalog import Catalog, iter_catalog, load_catalog
from fashn_async.bulk._folder import EARLIER_JOB_FILES, OUTPUT_NAME
from fashn_async.bulk._job import BulkJob
from fashn_async.bulk._journal import JOURNAL_NAME, Journal
from fashn_async.bulk._manifest import MANIFEST_NAME, write_manifest
from fashn_async.bulk._outcome import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    JobOptions,
    JobSummary,
)
from fashn_async.bulk._progress import DisplayMode, make_display
from fashn_async.bulk._records import CatalogError
from fashn_async.bulk._report import REPORT_NAME, write_report
from fashn_async.bulk._rows import State
from fashn_async.bulk._signals import StopOnSignals
from fashn_async.bulk._thumbs import THUMBS_DIR
from fashn_async.bulk._words import plural
from fashn_async.errors import (
    AuthenticationError,
    ConfigurationError,
    FashnError,
    RateLimitError,
    TransportError,
)

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "EXIT_CANNOT_START",
    "STOPPED_STARTING",
    "BatchSettings",
    "dry_run",
    "fresh_start",
    "run_batch",
]

EXIT_CANNOT_START = 2
#: What a stop during start-up prints (its exit code is 130).
STOPPED_STARTING = "stopped while starting: nothing was sent; run the same command again"
RESEND_UNCERTAIN, RETRY_FAILED = "--resend-uncertain", "--retry-failed"  # (send rows again)
#: Bad rows listed when a job starts (a dry run lists them all; the manifest has all).
LISTED_BAD_ROWS = 50


@attrs.frozen(kw_only=True)
class BatchSettings:
    """Everything ``fashn-async batch`` was asked to do."""

    catalog: Path
    options: JobOptions
    api_key: str | None = attrs.field(default=None, repr=False)
    base_url: str = "https://api.fashn.ai"
    limits: Limits = attrs.field(factory=Limits)
    polling: Polling = attrs.field(factory=Polling)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    model_name: str | None = None
    output_format: str | None = None
    display: DisplayMode = "auto"
    log_interval: float = 10.0
    report: bool = True
    time_scale: float = 1.0
    prepare_images: bool = False  # resized and re-encoded before sending (NOTES.md)
    trust_env: bool = True  # HTTP_PROXY and the like (False: the demo's emulator, loopback)


def dry_run(settings: BatchSettings, say: Callable[[str], None]) -> int:
    """Validate every row, list each bad one (a repeat too: a row with no id asking for
    what an earlier one does) with its line; send and write nothing. Read as a stream:
    memory grows only by a small int per row with no id."""
    rows, bad = 0, 0
    try:
        for row in iter_catalog(settings.catalog, **_reading(settings)):
            rows += 1
            if not row.ok:
                bad += 1
                say(f"{settings.catalog}: line {row.line}: {row.error}")
    except CatalogError as error:
        say(f"cannot read the catalog: {error.message}")
        return EXIT_CANNOT_START
    if not rows:
        say(f"cannot read the catalog: {settings.catalog}: the catalog has no rows")
        return EXIT_CANNOT_START
    say(f"dry run: {plural(rows, 'row')}, {rows - bad} valid, {bad} bad; nothing sent")
    return EXIT_SOME_FAILED if bad else EXIT_OK


async def run_batch(settings: BatchSettings, console: Console) -> int:
    """Run (or resume) the job; return the exit code.

    SIGINT and SIGTERM are handled from the first line on: during start-up (reading the
    catalog, opening the journal, the credits check) the first one stops it at once,
    nothing sent (exit 130); once the job runs, the first stops the job cleanly and a
    second ends the process at once (:class:`StopOnSignals`).
    """

    def say(text: str) -> None:
        console.print(visible(text), markup=False, highlight=False)

    task = asyncio.current_task()
    assert task is not None

    def cancel_start() -> None:
        task.cancel()

    with StopOnSignals(cancel_start) as signals:
        try:
            return await _run_batch(settings, say, console, signals)
        except asyncio.CancelledError:
            if not signals.received:
                raise
            say(STOPPED_STARTING)
            return EXIT_INTERRUPTED


async def _run_batch(
    settings: BatchSettings,
    say: Callable[[str], None],
    console: Console,
    signals: StopOnSignals,
) -> int:
    out = settings.options.out
    try:
        _refuse_a_catalog_the_job_writes(settings.catalog, out)
        catalog = await _load_off_loop(settings)
        base_url = _client(settings, api_key=UNUSED_KEY).base_url  # as the client normalizes it
        journal = Journal.open(
            out,
            meta={
                "catalog": str(catalog.path.resolve()),
                "catalog_sha256": catalog.sha256,
                "base_url": shown_url(base_url),  # no credential on disk
                "model_name": settings.model_name,
                "output_format": settings.output_format,
            },
            rows=catalog.rows,
        )
    except ConfigurationError as error:
        say(f"cannot start: {error.message}")
        return EXIT_CANNOT_START
    with journal:
        states = {record.row: record.state for record in journal.records()}
        # Only rows still invalid: a done row whose input file is gone since is no news.
        invalid = [
            journal.catalog[row]
            for row, state in states.items()
            if state == State.INVALID and row in journal.catalog
        ]
        for row in invalid[:LISTED_BAD_ROWS]:
            say(f"{catalog.path}: line {row.line}: {row.error}")
        if len(invalid) > LISTED_BAD_ROWS:
            say(f"... and {len(invalid) - LISTED_BAD_ROWS} more bad rows (see the manifest)")
        work = _work_left(journal, settings.options)
        try:
            # Nothing to send: no key needed (the client is then never used).
            client = _client(
                settings, api_key=settings.api_key if work else settings.api_key or UNUSED_KEY
            )
        except ConfigurationError as error:
            say(f"cannot start: {_cli_words(error.message)}")
            return EXIT_CANNOT_START
        async with client:
            if work:
                problem = await _preflight(client)
                if problem is not None:
                    say(f"cannot start: {problem}")
                    return EXIT_CANNOT_START
            options = attrs.evolve(settings.options, thumbnails=settings.report)
            with make_display(
                settings.display, console, settings.log_interval, settings.time_scale
            ) as display:
                job = BulkJob(client, catalog, journal, options, display)
                signals.stop = job.interrupt
                summary = await job.run()
                signals.stop = _finishing  # the manifest and report: a moment, then done
        records = journal.records()
        runs = journal.runs()
        rows = dict(journal.catalog)
    try:
        write_manifest(out, records)
        if settings.report:
            await in_worker(
                lambda: write_report(
                    out,
                    records,
                    rows,
                    title=str(catalog.path),
                    runs=runs,
                    time_scale=settings.time_scale,
                )
            )
    except OSError as error:
        problem = f"cannot write the manifest or report in {out}: {error.strerror or error}"
        summary = attrs.evolve(summary, problem=summary.problem or problem)
    _summarize(summary, out, settings.report, say)
    return summary.exit_code


def _client(settings: BatchSettings, *, api_key: str | None) -> AsyncFashn:
    return AsyncFashn(
        api_key=api_key,
        base_url=settings.base_url,
        limits=settings.limits,
        polling=settings.polling,
        retry=settings.retry,
        prepare_images=settings.prepare_images,
        trust_env=settings.trust_env,
    )


def _cli_words(message: str) -> str:
    """The client's words for a missing key, in the command line's terms."""
    if "no API key" in message:
        return "no API key: pass --api-key or set the FASHN_API_KEY environment variable"
    return message


def _refuse_a_catalog_the_job_writes(catalog: Path, out: Path) -> None:
    """A catalog that is one of the files the job writes in ``out`` (its manifest, say)
    would be overwritten by the job.

    Raises:
        ConfigurationError: naming the file.
    """
    written = {JOURNAL_NAME, MANIFEST_NAME, REPORT_NAME, *EARLIER_JOB_FILES}
    try:
        target = catalog.resolve()
        folder = out.resolve()
    except (OSError, RuntimeError):  # a loop of symlinks: left to loading, which says so
        return
    if target.parent == folder and (target.name in written or target.name.startswith(".")):
        raise ConfigurationError(
            f"the catalog {catalog} is a file this job writes in --out ({target.name}): "
            "copy it elsewhere (or give another --out) and run again"
        )
    if folder / THUMBS_DIR in target.parents:
        raise ConfigurationError(f"the catalog {catalog} is inside the job's thumbnails")


def fresh_start(out: Path, catalog: Path) -> None:
    """Forget the previous demo in ``out`` (the demo starts over every time).

    Raises:
        ConfigurationError: ``out`` holds the journal of another job: never touched.
    """
    path = out / JOURNAL_NAME
    if path.is_file():  # the journal's catalog path is absolute; either may be relative
        catalog = catalog.resolve()
        try:
            with contextlib.closing(
                sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            ) as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'catalog'").fetchone()
        except sqlite3.Error:
            row = None
        if row is None or Path(row[0]).resolve() != catalog:
            raise ConfigurationError(
                f"{out} holds the journal of another job; the demo leaves it alone: "
                "give the demo another --out folder"
            )
    names = (JOURNAL_NAME, f"{JOURNAL_NAME}-wal", f"{JOURNAL_NAME}-shm", *EARLIER_JOB_FILES)
    for name in names:
        (out / name).unlink(missing_ok=True)
    for path in out.glob("row*"):  # its outputs: beside no journal, they refuse a start
        if OUTPUT_NAME.fullmatch(path.name):
            path.unlink(missing_ok=True)


async def _load_off_loop(settings: BatchSettings) -> Catalog:
    """:func:`_load` in a worker thread: a signal stops the start-up at its next row."""
    stop = threading.Event()
    try:
        catalog: Catalog = await in_worker(_load, settings, stop)
    finally:
        stop.set()
    return catalog


def _load(settings: BatchSettings, stop: threading.Event | None = None) -> Catalog:
    return load_catalog(settings.catalog, stop=stop, **_reading(settings))


def _reading(settings: BatchSettings) -> dict[str, Any]:
    """How the catalog is read, as the run will send it."""
    return {
        "model_name": settings.model_name,
        "output_format": settings.output_format,
        "prepared": settings.prepare_images,
    }


def _work_left(journal: Journal, options: JobOptions) -> bool:
    """Whether this run will talk to the API (else an unreachable API is no reason to stop)."""
    counts = journal.counts()
    return (
        any(counts[state] for state in State.ALL if state not in State.FINAL)
        or bool(options.resend_uncertain and counts[State.UNCERTAIN])
        or bool(options.retry_failed and counts[State.FAILED])
    )


async def _preflight(client: AsyncFashn) -> str | None:
    """One cheap call (the credit balance) to know the API is there and takes the key."""
    try:
        await client.credits()
    except AuthenticationError as error:
        return f"the API at {shown_url(client.base_url)} refused the API key ({error.message})"
    except TransportError as error:
        return f"cannot reach the API at {shown_url(client.base_url)} ({error.message})"
    except RateLimitError:
        return None  # there, and taking the key
    except FashnError as error:
        return f"the API at {shown_url(client.base_url)} answered the credits check with {error}"
    return None


def _finishing() -> None:
    """A first signal once the job has ended: the manifest and report are written in a
    moment anyway (a second signal ends the process at once)."""


def _summarize(summary: JobSummary, out: Path, report: bool, say: Callable[[str], None]) -> None:
    """The summary: counts in the progress line's words, the files, and one line on why
    the job stopped (a disk problem: that line alone names it) and what to do next."""
    say(summary.counts_line)
    say(f"manifest: {out / MANIFEST_NAME}")
    if report:
        say(f"report: {out / REPORT_NAME}")
    running = ""
    if summary.left_running and summary.stopped_running:
        running = f" ({plural(summary.stopped_running, 'running prediction')} left running)"
    elif summary.stopped_running:
        # A cancel is best effort (a gateway may refuse it): say it was sent, no more.
        sent, kept = summary.stopped_running - summary.not_canceled, summary.not_canceled
        parts = [f"a cancel sent to {plural(sent, 'running prediction')}"] if sent else []
        if kept:
            parts.append(
                f"{plural(kept, 'running prediction')} not canceled: collected by a re-run"
            )
        running = f" ({'; '.join(parts)})"
    if summary.problem is not None:
        say(f"stopped{running}: {summary.problem}; free some space (or fix {out}) and run "
            "the same command again to resume")  # fmt: skip
    elif summary.interrupted:
        say(f"stopped before the end{running}: run the same command again to resume")
    elif summary.exit_code != EXIT_OK and summary.counts.get(State.PENDING):
        pending = summary.counts[State.PENDING]
        say(f"{plural(pending, 'row')} not sent yet: run the same command again to resume")
    for hint in next_steps(summary.counts):
        say(hint)


def next_steps(counts: Mapping[str, int]) -> list[str]:
    """What a person can do about the rows a job left ``submitted`` (a re-run collects
    them), ``uncertain`` or ``failed`` (the option that sends them again, and what it
    costs)."""
    steps = []
    if n := counts.get(State.SUBMITTED):
        steps.append(
            f"{plural(n, 'submitted row')} not collected yet: run the same command again to "
            f"collect {'it' if n == 1 else 'them'} (polled by id; sent again only if canceled)"
        )
    if counts.get(State.UNCERTAIN):
        one = counts[State.UNCERTAIN] == 1
        steps.append(
            f"{plural(counts[State.UNCERTAIN], 'uncertain row')}: may have been charged (a "
            "POST without an answer, or a prediction the API no longer finds); re-run with "
            f"{RESEND_UNCERTAIN} to send {'it' if one else 'them'} again "
            f"({'it' if one else 'each'} may then be charged twice)"
        )
    if counts.get(State.FAILED):
        steps.append(
            f"{plural(counts[State.FAILED], 'failed row')}: see the manifest for the errors; "
            f"re-run with {RETRY_FAILED} to send them again (failed predictions are not "
            "charged)"
        )
    return steps
