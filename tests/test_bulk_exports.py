"""Catalogs as spreadsheets export them: trailing empty columns, semicolons, UTF-16, and
file names written in another Unicode normalization form."""

from __future__ import annotations

import codecs
import re
import unicodedata
from pathlib import Path

import pytest

from fashn_async import TryOnRequest
from fashn_async.bulk import CatalogError, load_catalog
from fashn_async.testing import Emulator
from tests.bulk_support import read_manifest, rerun, write_images

ROWS = [
    ["id", "model_image", "garment_image", "category", "seed"],
    ["r0", "images/model_0.png", "images/garment_0.png", "tops", "0"],
    ["r1", "images/model_0.png", "images/garment_0.png", "bottoms", "1"],
]
#: The requests every export of ROWS must load as.
EXPECTED = [("r0", "tops", 0), ("r1", "bottoms", 1)]


def _lines(sep: str = ",", header_tail: str = "", row_tail: str = "", end: str = "\n") -> str:
    header = sep.join(ROWS[0]) + header_tail
    return "".join(line + end for line in [header, *(sep.join(r) + row_tail for r in ROWS[1:])])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with images/model_0.png and images/garment_0.png."""
    write_images(tmp_path, 1, 1)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        pytest.param(_lines(header_tail=",,", row_tail=",,"), "utf-8", id="excel-trailing-cols"),
        pytest.param(_lines(header_tail=",", row_tail=","), "utf-8", id="one-trailing-comma"),
        pytest.param(_lines(header_tail=",,"), "utf-8", id="nameless-cols-rows-short"),
        pytest.param(_lines(row_tail=",", end="\r\n"), "utf-8-sig", id="comma-on-rows-only"),
        pytest.param(_lines(row_tail=", ,"), "utf-8", id="blank-values-past-header"),
        pytest.param(_lines(sep=";"), "utf-8", id="semicolons"),
        pytest.param(_lines(sep=";", header_tail=";;", row_tail=";;"), "utf-8", id="semi-trail"),
        pytest.param(_lines(sep="\t"), "utf-8", id="tabs-in-a-csv"),
        pytest.param(_lines(), "utf-16", id="utf-16-le-bom"),
        pytest.param(_lines(end="\r\n"), "utf-16-be-bom", id="utf-16-be-bom"),
        pytest.param(_lines(sep="\t", end="\r\n"), "utf-16", id="excel-unicode-text"),
        pytest.param(_lines(), "utf-32", id="utf-32-bom"),
    ],
)
def test_a_spreadsheet_export_loads_as_the_plain_csv(
    folder: Path, text: str, encoding: str
) -> None:
    """Excel's exports load as the plain CSV does: empty nameless columns and empty
    values past the header ignored, a header with no comma split at semicolons (else
    tabs), UTF-16 and UTF-32 read from their byte-order mark."""
    path = folder / "catalog.csv"
    if encoding == "utf-16-be-bom":
        path.write_bytes(codecs.BOM_UTF16_BE + text.encode("utf-16-be"))
    else:
        path.write_bytes(text.encode(encoding))
    catalog = load_catalog(path)
    assert catalog.bad == []
    assert [(r.label, r.inputs["category"], r.request.seed) for r in catalog.rows] == EXPECTED  # type: ignore[union-attr]
    assert all(set(r.inputs) == set(ROWS[0]) - {""} for r in catalog.rows)


def test_a_value_under_a_nameless_column_or_past_the_header_is_one_bad_row(
    folder: Path,
) -> None:
    """A value under a column with no name, or past the header's last column, makes its
    row invalid, naming the line and the column number; the other rows load."""
    header = ",".join(ROWS[0][:2]) + ",,," + ",".join(ROWS[0][2:]) + ",,"
    good = "r0,images/model_0.png,,,images/garment_0.png,tops,0,,"
    path = folder / "catalog.csv"
    path.write_text(
        "\n".join(
            [
                header,
                good,
                "r1,images/model_0.png,, x ,images/garment_0.png,tops,1",
                "r2,images/model_0.png,,,images/garment_0.png,tops,2,,,7",
                "r3,images/model_0.png,,,images/garment_0.png,tops",
                good.replace("r0", "r4"),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    rows = load_catalog(path).rows
    assert [r.ok for r in rows] == [True, False, False, False, True]
    assert rows[1].line == 3
    assert rows[1].error == (
        "column 4 has no name in the header but holds ' x ': name the column in line 1, "
        "or empty the cell"
    )
    assert rows[2].error == (
        "expected 7 values (id, model_image, garment_image, category, seed), got 10"
    )
    assert rows[3].error == (
        "expected 7 values (id, model_image, garment_image, category, seed), got 6"
    )


def test_a_header_of_utf16_with_no_byte_order_mark_names_the_encoding(folder: Path) -> None:
    """UTF-16 saved with no byte-order mark: the header's NULs are named, with the way
    out, before any row is read."""
    path = folder / "catalog.csv"
    path.write_bytes(_lines().encode("utf-16-le"))
    with pytest.raises(CatalogError, match=re.escape("UTF-16 text with no byte-order mark?")):
        load_catalog(path)


@pytest.mark.parametrize(("on_disk", "in_catalog"), [("NFC", "NFD"), ("NFD", "NFC")])
def test_an_image_named_in_another_unicode_form_is_found(
    folder: Path, on_disk: str, in_catalog: str
) -> None:
    """A file name spelled decomposed (NFD, as macOS writes it) in the catalog and
    composed (NFC) on disk, or the reverse, is the same file: the row is valid and sends
    that file."""
    name = "modèle été ü/façade.png"
    stored = folder / "images" / unicodedata.normalize(on_disk, name)
    stored.parent.mkdir()
    (folder / "images" / "model_0.png").rename(stored)
    written = unicodedata.normalize(in_catalog, f"images/{name}")
    path = folder / "catalog.csv"
    path.write_text(f"model_image,garment_image,category\n{written},images/garment_0.png,tops\n")
    (row,) = load_catalog(path).rows
    assert row.error is None
    assert isinstance(row.request, TryOnRequest)
    assert row.request.model_image == stored
    assert row.inputs["model_image"] == written  # the row as written: its identity


async def test_an_excel_export_runs_to_done(emulator: Emulator, tmp_path: Path) -> None:
    """A UTF-16, semicolon-separated catalog with trailing empty columns and decomposed
    file names runs: every row done, each paid once."""
    write_images(tmp_path, 1, 1)
    (tmp_path / "images" / "model_0.png").rename(tmp_path / "images" / "modèle.png")
    nfd = unicodedata.normalize("NFD", "images/modèle.png")
    text = "id;model_image;garment_image;category;;\r\n" + "".join(
        f"r{n};{nfd};images/garment_0.png;tops;;\r\n" for n in range(3)
    )
    catalog = tmp_path / "catalog.csv"
    catalog.write_bytes(text.encode("utf-16"))
    code, printed = await rerun(emulator, catalog, tmp_path / "out")
    assert code == 0, printed
    assert [e["status"] for e in read_manifest(tmp_path / "out")] == ["done"] * 3
    assert emulator.report().credits_used == 3
