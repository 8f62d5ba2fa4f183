"""Phone photos through the command line: prepared before sending by default, and, sent as
they are (``--as-is``), a row whose files make a request over the API's 16 MiB is a bad
row in the dry run and in the run alike, never a surprise mid-job.
"""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import pytest
from bulk_support import journal_counts, run_cli
from PIL import Image
from rich.console import Console

from fashn_async.bulk import JobOptions
from fashn_async.bulk._command import BatchSettings, dry_run, run_batch
from fashn_async.testing import Emulator

#: An API key of the shortest accepted length's kind (12 or more characters).
K12 = "test-key-0123"


def noisy_png(path: Path, side: int, seed: int) -> Path:
    """A PNG of random pixels, stored uncompressed: ``side`` x ``side`` x 3 bytes."""
    noise = random.Random(seed).randbytes(side * side * 3)
    Image.frombytes("RGB", (side, side), noise).save(path, compress_level=0)
    return path


@pytest.fixture
def big_catalog(tmp_path: Path) -> Path:
    """One small row, and one whose two photos come to about 21 MiB as base64."""
    noisy_png(tmp_path / "model.png", 1600, 1)
    noisy_png(tmp_path / "garment.png", 1600, 2)
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(small)
    path = tmp_path / "catalog.csv"
    path.write_text(
        "id,model_image,garment_image,category\n"
        "small,small.png,small.png,tops\n"
        "big,model.png,garment.png,tops\n",
        encoding="utf-8",
    )
    return path


def settings_for(emulator: Emulator, catalog: Path, *, prepare: bool) -> BatchSettings:
    return BatchSettings(
        catalog=catalog,
        options=JobOptions(out=catalog.parent / "out"),
        api_key=emulator.api_key,
        base_url=emulator.url,
        display="lines",
        report=False,
        prepare_images=prepare,
    )


async def test_as_is_a_request_over_the_limit_is_a_bad_row_before_anything_is_sent(
    emulator: Emulator, big_catalog: Path
) -> None:
    """--as-is: the dry run names the row, the size and the remedy, and the run agrees
    (the row invalid from the start, the other done; only it is paid for)."""
    said: list[str] = []
    assert dry_run(settings_for(emulator, big_catalog, prepare=False), said.append) == 1
    assert any("line 3" in line and "--prepare-images" in line for line in said), said
    assert any("MiB" in line for line in said), said
    buffer = io.StringIO()
    settings = settings_for(emulator, big_catalog, prepare=False)
    code = await run_batch(settings, Console(file=buffer, width=300))
    assert code == 1, buffer.getvalue()
    assert journal_counts(big_catalog.parent / "out") == {"done": 1, "invalid": 1}
    assert emulator.report().credits_used == 1


async def test_prepared_the_same_photos_are_sent_and_done(
    emulator: Emulator, big_catalog: Path
) -> None:
    """Prepared (the command line's default): every row valid and done, the big photos
    re-encoded before sending (the emulator took bodies far under 16 MiB)."""
    said: list[str] = []
    assert dry_run(settings_for(emulator, big_catalog, prepare=True), said.append) == 0, said
    buffer = io.StringIO()
    settings = settings_for(emulator, big_catalog, prepare=True)
    code = await run_batch(settings, Console(file=buffer, width=300))
    assert code == 0, buffer.getvalue()
    assert journal_counts(big_catalog.parent / "out") == {"done": 2}
    assert emulator.report().bad_requests == 0


def test_the_command_line_prepares_by_default(big_catalog: Path) -> None:
    """``fashn-async batch --dry-run``: every row valid (prepared); with --as-is, the big
    row is bad (exit 1) and the message says how to send it."""
    args = ["batch", str(big_catalog), "--out", str(big_catalog.parent / "out"), "--dry-run"]
    assert run_cli(*args, FASHN_API_KEY=K12).returncode == 0
    as_is = run_cli(*args, "--as-is", FASHN_API_KEY=K12)
    assert as_is.returncode == 1
    assert "--prepare-images" in as_is.stdout + as_is.stderr


def test_as_is_a_data_uri_counts_toward_the_body(tmp_path: Path) -> None:
    """A data URI in a cell is sent as it is: with a big file beside it, a request over the
    limit is a bad row (the dry run said every row valid before)."""
    from fashn_async.bulk import load_catalog

    noisy_png(tmp_path / "model.png", 1600, 1)  # about 10 MiB as base64
    inline = (
        "data:image/png;base64," + base64.b64encode((tmp_path / "model.png").read_bytes()).decode()
    )
    path = tmp_path / "catalog.jsonl"
    row = {"model_image": "model.png", "garment_image": inline, "category": "tops"}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (bad,) = load_catalog(path).rows
    assert bad.error is not None
    assert "--prepare-images" in bad.error
    (good,) = load_catalog(path, prepared=True).rows
    assert good.ok, good.error


def test_a_model_jobs_json_values_are_sent_as_written(tmp_path: Path) -> None:
    """--model-name with JSONL: a JSON string stays a string ("007", "1e3", "True": a
    prompt or a name), as only a CSV cell is read for what it looks like."""
    from fashn_async.bulk import load_catalog

    Image.new("RGB", (64, 64)).save(tmp_path / "m.png")
    row = {"model_image": "m.png", "garment_image": "m.png", "prompt": "007", "x": "True"}
    path = tmp_path / "catalog.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (read,) = load_catalog(path, model_name="tryon-v1.6").rows
    assert read.ok, read.error
    inputs = read.request.inputs  # type: ignore[union-attr]
    assert inputs["prompt"] == "007"
    assert inputs["x"] == "True"
