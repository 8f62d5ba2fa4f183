"""Shared helpers of the bulk and CLI tests: catalogs, a standalone emulator, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import http.client
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yarl
from rich.console import Console

from fashn_async import TryOnRequest
from fashn_async._payload import prepare_request
from fashn_async.bulk import JobOptions
from fashn_async.bulk._command import BatchSettings, run_batch
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
    """The emulator's payload digest of each row's request body -> row number."""

    async def digests() -> dict[str, int]:
        found = {}
        with catalog.open(newline="", encoding="utf-8") as fh:
            for number, row in enumerate(csv.DictReader(fh), start=1):
                request = TryOnRequest(
                    model_image=catalog.parent / row["model_image"],
                    garment_image=catalog.parent / row["garment_image"],
                    category=row["category"],  # type: ignore[arg-type]
                )
                found[payload_digest((await prepare_request(request)).body)] = number
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
