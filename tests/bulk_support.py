"""Shared helpers of the bulk and CLI tests: catalogs, a standalone emulator, the CLI, and
a journal whose writes are held or refused (a full disk) at a chosen moment."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import csv
import http.client
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yarl
from rich.console import Console

from fashn_async import ImagePreparation, TryOnRequest
from fashn_async._payload import prepare_request
from fashn_async.bulk import JobOptions
from fashn_async.bulk._command import BatchSettings, run_batch
from fashn_async.bulk._folder import RESERVE_BYTES, RESERVE_NAME
from fashn_async.bulk._journal import Journal
from fashn_async.testing import Emulator, sample_image
from fashn_async.testing._state import payload_digest

KEY = "bulk-test-key"
CATEGORIES = ("tops", "bottoms", "one-pieces")


def write_images(folder: Path, models: int, garments: int) -> None:
    """Small sample images: ``images/model_<i>.png`` and ``images/garment_<j>.png``."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(models):
        (images / f"model_{i}.png").write_bytes(sample_image("model", seed=i, size=(72, 96)))
    for j in range(garments):
        data = sample_image("garment", seed=100 + j, size=(72, 96))
        (images / f"garment_{j}.png").write_bytes(data)


def write_catalog(
    folder: Path, rows: int, *, models: int = 10, extra: Sequence[dict[str, str]] = ()
) -> Path:
    """A CSV of ``rows`` distinct pairs (then ``extra`` rows as given); returns its path."""
    garments = -(-rows // models)
    write_images(folder, models, garments)
    path = folder / "catalog.csv"
    columns = ["id", "model_image", "garment_image", "category"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        for n in range(rows):
            writer.writerow(
                {
                    "id": f"sku-{n + 1}",
                    "model_image": f"images/model_{n % models}.png",
                    "garment_image": f"images/garment_{n // models}.png",
                    "category": CATEGORIES[n % 3],
                }
            )
        for row in extra:
            writer.writerow(row)
    return path


def read_manifest(out: Path) -> list[dict[str, Any]]:
    """The manifest's lines, parsed."""
    text = (out / "manifest.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def journal_counts(out: Path) -> dict[str, int]:
    """Rows per state, read straight from the journal file (as a crash left it); empty
    while there is no journal yet."""
    path = out / "journal.sqlite3"
    if not path.is_file():
        return {}
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            return dict(db.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
    except sqlite3.OperationalError:  # created this instant, no table yet
        return {}


def row_digests(catalog: Path) -> dict[str, int]:
    """The emulator's payload digest of each row's request body -> row number, its images
    prepared as the command line prepares them by default (``--prepare-images``)."""

    async def digests() -> dict[str, int]:
        found = {}
        preparer = ImagePreparation().preparer()
        with catalog.open(newline="", encoding="utf-8") as fh:
            for number, row in enumerate(csv.DictReader(fh), start=1):
                request = TryOnRequest(
                    model_image=catalog.parent / row["model_image"],
                    garment_image=catalog.parent / row["garment_image"],
                    category=row["category"],  # type: ignore[arg-type]
                )
                prepared = await prepare_request(request, preparer=preparer)
                found[payload_digest(prepared.body)] = number
        return found

    return asyncio.run(digests())


@contextlib.contextmanager
def standalone_emulator(*args: str) -> Iterator[str]:
    """``fashn-async emulator --port 0`` in its own process; yields its URL."""
    command = [sys.executable, "-m", "fashn_async", "emulator", "--port", "0", "--api-key", KEY]
    with subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first.startswith("FASHN API emulator listening on http://127.0.0.1:"), first
            yield first.split()[-1]
        finally:
            process.terminate()
            process.wait(timeout=30)


def control(url: str, method: str, path: str, body: Any = None) -> Any:
    """Call a route of a standalone emulator; return the JSON answer."""
    parsed = yarl.URL(url)
    connection = http.client.HTTPConnection(parsed.host or "", parsed.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        connection.request(method, path, None if body is None else json.dumps(body), headers)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def cli(*args: str) -> list[str]:
    """The command line to run ``fashn-async`` with ``args`` in a subprocess."""
    return [sys.executable, "-m", "fashn_async", *args]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no stray key or base URL from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASHN_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, timeout: float = 60, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``fashn-async args`` to its end (in ``cwd``); return the finished process."""
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        cli(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
        cwd=cwd,
        check=False,
    )


async def rerun(emulator: Emulator, catalog: Path, out: Path) -> tuple[int, str]:
    """Run the bulk job on ``catalog`` into ``out`` again, as a person would after a
    stop: (exit code, what it printed)."""
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


class QuietDisplay:
    """A display that shows nothing."""

    def update(self, counts: object, total: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def job_meta(emulator: Emulator) -> dict[str, str | None]:
    """The settings a bulk job on ``emulator`` opens its journal with."""
    return {"base_url": emulator.url, "model_name": None, "output_format": None}


class HeldAtTheDoor:
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


#: FillingDisk's modes.
MODES = ["until freed", "k..k+2", "from k on"]


@contextlib.contextmanager
def filling_disk(journal: Journal, k: int, mode: str) -> Iterator[FillingDisk]:
    """``journal``'s connection behind a :class:`FillingDisk` (``k``, ``mode``: as there;
    its reserve beside the journal) for the block, the real one back after it."""
    real = journal._db
    disk = FillingDisk(real, journal.path.parent / RESERVE_NAME, k, mode)
    journal._db = disk  # type: ignore[assignment]
    try:
        yield disk
    finally:
        journal._db = real


class FillingDisk:
    """A journal database on a disk that refuses writes (a write: a transaction, or a
    statement outside one) as SQLite does on a full disk; reads always work.

    From the ``k``-th write on: ``"until freed"``, until the job frees its reserve;
    ``"k..k+2"``, three writes whatever the reserve (the space it freed taken meanwhile
    by another writer), so that a refused write, its retry and the stop's own records may
    all be refused; ``"from k on"``, every write (a failing disk) until space returns for
    the re-run.
    """

    def __init__(self, real: sqlite3.Connection, reserve: Path, k: int, mode: str) -> None:
        self.real = real
        self.writes = 0
        self._reserve = reserve
        self._k = k
        self._mode = mode
        self._in_transaction = False

    def refuse_from(self, later: int = 1) -> None:
        """Refuse (as the mode says) from the ``later``-th write from now on."""
        self._k = self.writes + later

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
        if self._mode == "until freed":
            full = self.writes >= self._k and self._reserve.stat().st_size == RESERVE_BYTES
        elif self._mode == "from k on":
            full = self.writes >= self._k
        else:
            full = self._k <= self.writes <= self._k + 2
        if full:
            raise sqlite3.OperationalError("database or disk is full")

    def close(self) -> None:
        self.real.close()
