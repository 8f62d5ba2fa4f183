"""report.html: escaped, self-contained, and rendered by a real browser."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import system_program
from PIL import Image
from rich.console import Console

from fashn_async import Limits, Polling
from fashn_async.bulk import Journal, load_catalog, render_report
from fashn_async.bulk._command import BatchSettings, run_batch
from fashn_async.bulk._outcome import JobOptions
from fashn_async.bulk._rows import RowRecord
from fashn_async.testing import Emulator, PredictionFault
from tests.bulk_support import write_catalog, write_images

HOSTILE = '<script>alert("x")</script>'
ATTRIBUTE_BREAK = "'><b onmouseover=alert(1)>"


class _Tags(HTMLParser):
    """Every tag and attribute of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


def test_everything_from_the_input_is_escaped(tmp_path: Path) -> None:
    """Hostile labels, values, file names and error messages stay text: no tag, no handler."""
    write_images(tmp_path, 1, 1)
    odd = tmp_path / "images" / f"{ATTRIBUTE_BREAK}.png"
    odd.write_bytes((tmp_path / "images" / "model_0.png").read_bytes())
    catalog = tmp_path / "catalog.csv"
    with catalog.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "model_image", "garment_image", "category"])
        writer.writerow([HOSTILE, f"images/{ATTRIBUTE_BREAK}.png", "images/garment_0.png", "tops"])
        writer.writerow(["b", "images/model_0.png", "images/garment_0.png", HOSTILE])
    rows = load_catalog(catalog).rows
    with Journal.open(tmp_path / "out", meta={"catalog_sha256": "x"}, rows=rows) as journal:
        journal.ended(1, "failed", HOSTILE, f"the {ATTRIBUTE_BREAK} failed", "id<i>")
        page = render_report(
            tmp_path / "out", journal.records(), journal.catalog, title=HOSTILE, runs=journal.runs()
        )
    parsed = _parse(page)
    assert "script" not in parsed.tags
    assert "i" not in parsed.tags  # the prediction id "id<i>" stayed text
    assert not [name for name, _ in parsed.attributes if name.startswith("on")]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&#x27;&gt;&lt;b onmouseover=alert(1)&gt;" in page
    assert "category: must be one of" in page  # the bad row's message, escaped
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    assert ("content", csp) in parsed.attributes


async def _job_with_a_failure(emulator: Emulator, tmp_path: Path) -> Path:
    """Six rows through the batch path, one failing, one bad; returns the output folder."""
    extra = [{"id": "typo", "model_image": "images/model_0.png", "garment_image": "images/x.png",
              "category": "tops"}]  # fmt: skip
    catalog = write_catalog(tmp_path, 6, models=3, extra=extra)
    # The rows with model_2 fail: the fault matches a piece of that image's base64.
    encoded = {p.name: base64.b64encode(p.read_bytes()) for p in tmp_path.glob("images/*.png")}
    needle = encoded["model_2.png"][120:180]
    assert [name for name, data in encoded.items() if needle in data] == ["model_2.png"]
    emulator.inject(PredictionFault(name="PoseError", message="no pose", match=needle.decode()))
    out = tmp_path / "out"
    scale = emulator.config.time_scale
    settings = BatchSettings(
        catalog=catalog,
        options=JobOptions(out=out),
        api_key=emulator.api_key,
        base_url=emulator.url,
        limits=Limits().scaled(scale),
        polling=Polling().scaled(scale),
        display="quiet",
    )
    assert await run_batch(settings, Console(file=io.StringIO())) == 1
    return out


@pytest.mark.emulator(seed=3)
async def test_the_report_embeds_its_images(emulator: Emulator, tmp_path: Path) -> None:
    """Inputs and outputs are data-URI thumbnails, each image once; nothing remote."""
    out = await _job_with_a_failure(emulator, tmp_path)
    page = (out / "report.html").read_text(encoding="utf-8")
    thumbnails = page.count('{background-image:url("data:image/jpeg;base64,')
    outputs = len(list(out.glob("row*_0.png")))
    assert thumbnails == 3 + 2 + outputs  # 3 models, 2 garments, each output
    assert "url(http" not in page
    assert "src=" not in page
    assert "no such file" in page
    assert "PoseError" in page
    links = [value for name, value in _parse(page).attributes if name == "href"]
    assert links
    assert all((out / str(link)).is_file() for link in links)


@pytest.mark.emulator(seed=3)
async def test_a_large_report_links_cached_thumbnails(emulator: Emulator, tmp_path: Path) -> None:
    """Past EMBED_ROWS the page links thumbs/ lazily; thumbnails are made once, then reused."""
    out = await _job_with_a_failure(emulator, tmp_path)
    cached = {path: path.stat().st_mtime_ns for path in (out / "thumbs").iterdir()}
    outputs = len(list(out.glob("row*_0.png")))
    assert len(cached) == 3 + 2 + outputs
    with Journal.open(out, meta={}, rows=load_catalog(tmp_path / "catalog.csv").rows) as journal:
        records, runs, known = journal.records(), journal.runs(), journal.catalog
    page = render_report(out, records, known, title="big", runs=runs, embed=False)
    parsed = _parse(page)
    sources = [value for name, value in parsed.attributes if name == "src"]
    assert len(sources) == 6 * 2 + 1 + outputs  # each good row's two inputs, the typo row's
    # model, each output
    assert all(str(src).startswith("thumbs/") and (out / str(src)).is_file() for src in sources)
    assert ("loading", "lazy") in parsed.attributes
    assert "img-src data: 'self';" in page
    assert "base64," not in page
    assert {path: path.stat().st_mtime_ns for path in (out / "thumbs").iterdir()} == cached


@pytest.mark.looptime(False)  # a real browser in a real subprocess
@pytest.mark.emulator(time_scale=0.01, seed=3)
async def test_chromium_renders_the_report(emulator: Emulator, tmp_path: Path) -> None:
    """Headless Chromium loads report.html (thumbnails embedded) and the linked variant;
    the screenshots show the badges and the thumbnails."""
    browser = system_program("chromium", "chromium")
    out = await _job_with_a_failure(emulator, tmp_path)
    rows = load_catalog(tmp_path / "catalog.csv").rows
    with Journal.open(out, meta={}, rows=rows) as journal:
        records, runs, known = journal.records(), journal.runs(), journal.catalog
    linked = render_report(out, records, known, title="linked", runs=runs, embed=False)
    (out / "linked.html").write_text(linked, encoding="utf-8")
    for page in ("report.html", "linked.html"):
        shot = tmp_path / f"{page}.png"
        await anyio.run_process(
            [
                browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                "--window-size=1280,2000", (out / page).resolve().as_uri(),
            ],
            check=True,
        )  # fmt: skip
        with Image.open(shot) as image:
            assert image.size == (1280, 2000)
            colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
        assert colours is not None
        assert _near(colours, (0x12, 0x80, 0x5C)) > 200, page  # green: done badges, count
        assert _near(colours, (0xC4, 0x32, 0x0A)) > 100, page  # red: the failures
        assert len(colours) > 500, page  # thumbnails drawn, not an empty page


def _near(colours: Sequence[tuple[int, Any]], target: tuple[int, int, int]) -> int:
    """Pixels within a small distance of ``target``."""
    return sum(
        n for n, rgb in colours if all(abs(a - b) < 12 for a, b in zip(rgb, target, strict=True))
    )


def test_thumbnails_are_upright_and_transparency_is_white(tmp_path: Path) -> None:
    """A portrait phone photo stored landscape with EXIF orientation 6 gets a portrait
    thumbnail; a transparent cut-out (RGBA, and a palette with a transparent index) is
    drawn on white, not black."""
    from PIL import Image as PILImage

    from fashn_async.bulk._thumbs import thumbnail

    photo = PILImage.new("RGB", (400, 300), "red")  # stored landscape...
    exif = PILImage.Exif()
    exif[0x0112] = 6  # ...shown rotated 90 degrees: portrait
    photo.save(tmp_path / "phone.jpg", exif=exif)
    cutout = PILImage.new("RGBA", (300, 400), (0, 0, 0, 0))
    cutout.paste((0, 0, 255, 255), (100, 100, 200, 300))
    cutout.save(tmp_path / "cutout.png")
    palette = PILImage.new("P", (300, 400), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (100, 100, 200, 300))
    palette.save(tmp_path / "palette.png", transparency=0)

    def made(name: str) -> PILImage.Image:
        thumb = thumbnail(tmp_path / name, tmp_path / "out")
        assert isinstance(thumb, Path)
        return PILImage.open(thumb)

    with made("phone.jpg") as upright:
        assert upright.height > upright.width
    for name in ("cutout.png", "palette.png"):
        with made(name) as shown:
            corner = shown.convert("RGB").getpixel((2, 2))
            middle = shown.convert("RGB").getpixel((shown.width // 2, shown.height // 2))
        assert isinstance(corner, tuple)
        assert min(corner) > 240, (name, corner)  # white where it was transparent
        assert isinstance(middle, tuple)
        assert middle[2] > 200 > middle[0], (name, middle)  # the garment stays blue


def _record(row: int, state: str, **times: float) -> RowRecord:
    return RowRecord(
        row=row, line=row + 1, key=f"row{row:05d}", identity=f"id:{row}", position=row,
        label=None, inputs={}, state=state, prediction_id=None, outputs=[], files=[],
        error_name=None, error_message=None, cancel_requested=False, sends=1,
        sent_at=None, submitted_at=times.get("submitted"), finished_at=times.get("finished"),
    )  # fmt: skip


def _facts(page: str) -> dict[str, str]:
    header = page.split("<dl>", 1)[1].split("</dl>", 1)[0]
    pairs = header.replace("<dt>", "\0").split("\0")[1:]
    return dict(pair.replace("</dd>", "").split("</dt><dd>") for pair in pairs)


def _cards(page: str) -> dict[str, str]:
    found = page.split("<div class=cards>", 1)[1].split("</div><dl>", 1)[0]
    cards = [card.split("<b>", 1)[1].split("</b>") for card in found.split("</div>") if card]
    return {name: count for count, name in cards}


def test_the_summary_counts_every_state_and_rates_in_api_time(tmp_path: Path) -> None:
    """The summary shows done, canceled, failed, invalid and uncertain (zeros too); on an
    emulator run at time x100, throughput and latency are in API time and say so (6 real
    seconds for 2 rows is 10 API minutes: 0.2 done per minute of API time)."""
    records = [_record(1, "done", submitted=1000.0, finished=1000.08),
               _record(2, "done", submitted=1000.0, finished=1000.08),
               _record(3, "canceled"), _record(4, "pending")]  # fmt: skip
    runs = [(1000.0, 1006.0, "finished")]
    page = render_report(tmp_path, records, {}, title="t", runs=runs, time_scale=0.01)
    assert _cards(page) == {"rows": "4", "done": "2", "canceled": "1", "failed": "0",
                            "invalid": "0", "uncertain": "0", "pending": "1"}  # fmt: skip
    facts = _facts(page)
    assert facts["throughput"] == "0.2 done per minute of API time"
    assert facts["API time"].startswith("10 min 00 s: the emulator ran time x100")
    assert facts["submitted to finished"] == "median 8.0 s, p95 8.0 s of API time"
    real = _facts(render_report(tmp_path, records, {}, title="t", runs=runs))
    assert real["throughput"] == "20.0 done per minute"
    assert "API time" not in real


def test_a_data_uri_thumbnail_is_read_only_with_an_image_header(tmp_path: Path) -> None:
    """A catalog data URI gets a thumbnail only with a data:image/<type>;base64, header.

    The bytes after the comma are the same in each case: a header that says text, no
    base64, or no header at all is refused (no thumbnail), as the client would refuse it.
    """
    from fashn_async._images import from_data_uri, to_data_uri
    from fashn_async.bulk._thumbs import thumbnail

    png = io.BytesIO()
    Image.new("RGB", (40, 60), "blue").save(png, format="PNG")
    payload = base64.b64encode(png.getvalue()).decode("ascii")
    good = thumbnail(f"data:image/png;base64,{payload}", tmp_path)
    assert isinstance(good, bytes)
    assert from_data_uri("t", to_data_uri("image/jpeg", good).decode()) == good
    for header in ("data:text/html;base64,", "data:image/png,", "data:,", "junk,"):
        assert thumbnail(f"{header}{payload}", tmp_path) is None, header


def test_base64_lives_in_images_only() -> None:
    """Only _images reads or makes base64 and spells the data-URI prefix; the emulator
    has its own, and _redact encodes the API key alone, to find it in an answer."""
    import fashn_async

    package = Path(fashn_async.__file__).parent
    users = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "import base64" in path.read_text() and "testing" not in path.parts
    ]
    assert sorted(users) == ["_images.py", "_redact.py"]
    spelled = [  # the data-URI prefix too: is_data_uri, is_given_url and to_data_uri
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if '"data:' in path.read_text() and "testing" not in path.parts
    ]
    assert spelled == ["_images.py"]


def test_a_partial_thumbnail_of_a_process_gone_is_removed(tmp_path: Path) -> None:
    """A job stopped at once mid-write (a second signal, ``kill -9``) leaves its partial
    thumbnail, named by its pid; the next report removes it. A live process's (this
    one's) is left: it may still be writing."""
    import os
    import subprocess
    import sys

    from fashn_async.bulk._thumbs import THUMBS_DIR, thumbnails

    folder = tmp_path / THUMBS_DIR
    folder.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    orphan = folder / f".0e0d3fedf26cf3081098a09a.jpg.{gone}-140618277832384.part"
    alive = folder / f".1f1e4fedf26cf3081098a09b.jpg.{os.getppid()}-1.part"
    other = folder / "notes.txt"
    for path in (orphan, alive, other):
        path.write_bytes(b"x")
    image = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(image)
    thumbnails([image], tmp_path)
    assert not orphan.exists()
    assert alive.exists()
    assert other.exists()
