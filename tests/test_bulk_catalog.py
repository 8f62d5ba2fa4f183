"""Catalogs: CSV/TSV/JSONL rows validated one by one, bad rows kept with line numbers."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fashn_async import ModelRequest, TryOnRequest
from fashn_async.bulk import CatalogError, Journal, _catalog, _identity, _records, load_catalog
from fashn_async.bulk._catalog import iter_catalog
from tests.bulk_support import write_images


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with images/model_0.png, images/garment_0.png and a text file."""
    write_images(tmp_path, 1, 1)
    (tmp_path / "images" / "notes.png").write_text("not an image")
    return tmp_path


def _csv(folder: Path, text: str, name: str = "catalog.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_rows_become_requests_with_paths_relative_to_the_catalog(folder: Path) -> None:
    """Options are typed from text; image paths are resolved against the catalog's folder."""
    path = _csv(
        folder,
        "model_image,garment_image,category,num_samples,long_top,guidance_scale\n"
        "images/model_0.png,images/garment_0.png,tops,2,yes,2.5\n"
        "images/model_0.png,https://cdn.example.com/g.png,bottoms,,,\n",
    )
    catalog = load_catalog(path)
    first, second = catalog.rows
    assert first.request == TryOnRequest(
        model_image=folder / "images/model_0.png",
        garment_image=folder / "images/garment_0.png",
        category="tops",
        num_samples=2,
        long_top=True,
        guidance_scale=2.5,
    )
    assert (first.row, first.line, second.row, second.line) == (1, 2, 2, 3)
    assert second.ok
    assert second.request.garment_image == "https://cdn.example.com/g.png"  # type: ignore[union-attr]
    assert second.inputs == {
        "model_image": "images/model_0.png",
        "garment_image": "https://cdn.example.com/g.png",
        "category": "bottoms",
    }
    assert catalog.bad == []


def test_bad_rows_are_kept_with_their_line_and_the_problem(folder: Path) -> None:
    """Missing file, non-image, bad category, bad option: each row names line and column."""
    path = _csv(
        folder,
        "model_image,garment_image,category,seed\n"
        "images/model_0.png,images/missing.png,tops,1\n"
        "\n"  # a blank line is skipped, but counted
        "images/notes.png,images/garment_0.png,tops,1\n"
        "images/model_0.png,images/garment_0.png,hats,1\n"
        "images/model_0.png,images/garment_0.png,tops,many\n"
        "images/model_0.png,images/garment_0.png,tops,7\n"
        "images/model_0.png,images/garment_0.png\n",
    )
    catalog = load_catalog(path)
    problems = {row.line: row.error for row in catalog.bad}
    assert set(problems) == {2, 4, 5, 6, 8}
    assert "garment_image: no such file" in str(problems[2])
    assert "missing.png" in str(problems[2])
    assert "model_image: not an image" in str(problems[4])
    assert "category: must be one of tops, bottoms, one-pieces" in str(problems[5])
    assert "seed: expected an integer, got 'many'" in str(problems[6])
    assert "expected 4 values" in str(problems[8])
    assert [row.line for row in catalog.rows if row.ok] == [7]


def test_a_quoted_multiline_value_keeps_later_line_numbers_right(folder: Path) -> None:
    """A CSV record spanning two lines starts where it starts; the next row's line follows."""
    path = _csv(
        folder,
        'id,model_image,garment_image,category\n"two\nlines",images/model_0.png,'
        "images/garment_0.png,tops\nx,images/model_0.png,images/garment_0.png,socks\n",
    )
    first, second = load_catalog(path).rows
    assert (first.line, first.label, first.ok) == (2, "two\nlines", True)
    assert second.line == 4
    assert not second.ok


def test_jsonl_rows_and_broken_lines(folder: Path) -> None:
    """JSONL: typed values pass as they are; broken JSON or a non-object is a bad row."""
    good = {"model_image": "images/model_0.png", "garment_image": "images/garment_0.png"}
    lines = [
        json.dumps({**good, "category": "one-pieces", "num_samples": 3}),
        "{not json",
        "[1, 2]",
        "",
        json.dumps({**good, "category": "tops", "cover_feet": 3}),
        json.dumps({**good, "category": "tops", "colour": "red"}),
    ]
    catalog = load_catalog(_csv(folder, "\n".join(lines) + "\n", "catalog.jsonl"))
    assert catalog.rows[0].ok
    assert catalog.rows[0].request.num_samples == 3  # type: ignore[union-attr]
    errors = {row.line: row.error for row in catalog.bad}
    assert "not valid JSON" in str(errors[2])
    assert "expected a JSON object" in str(errors[3])
    assert "cover_feet: must be True or False" in str(errors[5])
    assert "colour: unknown column" in str(errors[6])


def test_model_name_sends_columns_as_inputs(folder: Path) -> None:
    """With a model name, a row is a ModelRequest: text cells typed, output_format added."""
    path = _csv(
        folder,
        "model_image\tgarment_image\tcategory\tmode\tseed\n"
        "images/model_0.png\timages/garment_0.png\tauto\tquality\t5\n",
        "catalog.tsv",
    )
    (row,) = load_catalog(path, model_name="tryon-v1.6", output_format="jpeg").rows
    assert row.request == ModelRequest(
        model_name="tryon-v1.6",
        inputs={
            "model_image": folder / "images/model_0.png",
            "garment_image": folder / "images/garment_0.png",
            "category": "auto",
            "mode": "quality",
            "seed": 5,
            "output_format": "jpeg",
        },
    )


def test_keys_are_stable_and_differ_by_row(folder: Path) -> None:
    """The output name of a row comes from its number and inputs: the same on every load."""
    text = "model_image,garment_image,category\n" + (
        "images/model_0.png,images/garment_0.png,tops\n" * 2
    )
    path = _csv(folder, text)
    first, again = load_catalog(path), load_catalog(path)
    assert [r.key for r in first.rows] == [r.key for r in again.rows]
    assert first.rows[0].key.startswith("row00001_")
    assert first.rows[1].key.startswith("row00002_")
    assert first.sha256 == again.sha256


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("catalog.xlsx", "", "unknown catalog format '.xlsx'"),
        ("missing.csv", None, "no such file"),
        ("catalog.csv", "", "the file is empty"),
        ("catalog.csv", "model_image,category\n", "missing column garment_image"),
        ("catalog.csv", "model_image,garment_image,category,model_image\n", "repeated column"),
        ("catalog.csv", "model_image,garment_image,category\n", "has no rows"),
        ("catalog.csv", "model_image,garment_image,category,colour\n", "unknown column 'colour'"),
        (
            "catalog.csv",
            ",,,\n",
            "missing column model_image, garment_image, category (the header has: no",
        ),
        ("catalog.csv", "model_image,garment_image\n", "missing column category"),
        (
            "catalog.csv",
            "Model Image,category,category,Seed\n",
            "repeated column 'category'; missing column model_image, garment_image; unknown "
            "column 'Model Image', 'Seed'; column names are exact (did you mean model_image "
            "for 'Model Image', seed for 'Seed'?)",
        ),
        ("catalog.csv", "model_image,garment_image,category,Seed,seed\n", "'Seed' (the header"),
        (
            "catalog.csv",
            "Category;Garment-Image;model image;colour\n",
            "missing column model_image, garment_image, category; unknown column 'Category', "
            "'Garment-Image', 'model image', 'colour'; column names are exact (did you mean "
            "model_image for 'model image', garment_image for 'Garment-Image', category for "
            "'Category'?)",
        ),
        ("catalog.csv", "model_image;garment_image;category;colour\n", "unknown column 'colour'"),
    ],
)
def test_a_file_that_is_no_catalog_raises(
    folder: Path, name: str, text: str | None, problem: str
) -> None:
    """A file unreadable as a catalog, or a bad header, raises CatalogError naming it."""
    path = folder / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape(problem)):
        load_catalog(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
@pytest.mark.parametrize("bad", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe9t\xe9"])
def test_a_byte_that_is_not_utf8_makes_one_invalid_row(
    folder: Path, suffix: str, bad: bytes
) -> None:
    """A byte that is not UTF-8 anywhere in a row (CSV, TSV or JSONL, in any cell): that
    row invalid with its line and the byte, the rows around it load; only a header that
    is not UTF-8 refuses the file."""
    good = {"model_image": "images/model_0.png", "garment_image": "images/garment_0.png",
            "category": "tops"}  # fmt: skip
    if suffix == ".jsonl":
        lines = [json.dumps(good).encode(), b'{"id": "sku-' + bad + b'", "model_image": 1}',
                 json.dumps({**good, "id": "c"}).encode()]  # fmt: skip
    else:
        sep = b"\t" if suffix == ".tsv" else b","
        header = sep.join([b"id", b"model_image", b"garment_image", b"category"])
        row = sep.join([b"a", b"images/model_0.png", b"images/garment_0.png", b"tops"])
        lines = [header, row, sep.join([b"b", b"images/m" + bad + b".png", b"x.png", b"tops"]),
                 row.replace(b"a", b"c", 1)]  # fmt: skip
    path = folder / f"catalog{suffix}"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows = load_catalog(path).rows
    assert [r.ok for r in rows] == [True, False, True]
    assert rows[1].line == (2 if suffix == ".jsonl" else 3)
    assert (rows[1].error or "").startswith(f"not UTF-8 text (byte 0x{bad[0]:02x}")
    header = b"model_image,garment_" + bad + b"image,category\n"
    (folder / "bad-header.csv").write_bytes(header)
    with pytest.raises(CatalogError, match="line 1: the header is not UTF-8 text"):
        load_catalog(folder / "bad-header.csv")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("sku-1", True), (7, True), ({"a": 1}, False), ([1], False), (True, False),
     (1.5, False)],
)  # fmt: skip
def test_a_jsonl_id_is_a_string_or_an_integer(folder: Path, value: Any, ok: bool) -> None:
    """A JSONL id that is an object, an array, a boolean or a fraction: that row invalid
    with its line, naming the id column; a string or an integer is kept as the row's id."""
    good = {"model_image": "images/model_0.png", "garment_image": "images/garment_0.png",
            "category": "tops"}  # fmt: skip
    path = folder / "catalog.jsonl"
    path.write_text(
        json.dumps(good) + "\n" + json.dumps({"id": value, **good}) + "\n", encoding="utf-8"
    )
    first, row = load_catalog(path).rows
    assert first.ok
    assert (row.ok, row.line) == (ok, 2), row.error
    if ok:
        assert (row.label, row.identity) == (str(value), f"id:{value}")
    else:
        assert (row.error or "").startswith("id: expected a string or an integer, got ")
        assert row.identity.startswith("sha:")


def test_a_nul_byte_or_a_deep_json_line_is_one_invalid_row(folder: Path) -> None:
    """A NUL byte in a path cell, a JSONL line nested 100,000 deep: that row invalid with
    its line, the others load."""
    csv_path = _csv(
        folder,
        "model_image,garment_image,category\n"
        "images/model_0.png,images/garment_0.png,tops\n"
        "images/mo\0del_0.png,images/garment_0.png,tops\n",
    )
    good, nul = load_catalog(csv_path).rows
    assert good.ok
    assert (nul.ok, nul.line) == (False, 3)
    assert "NUL" in (nul.error or "")
    deep = "[" * 100_000 + "]" * 100_000
    good_line = json.dumps(
        {"model_image": "images/model_0.png", "garment_image": "images/garment_0.png",
         "category": "tops"}
    )  # fmt: skip
    again = good_line.replace("{", '{"id": "again", ', 1)  # (not a repeat: not sent twice)
    jsonl = folder / "catalog.jsonl"
    jsonl.write_text(
        f'{good_line}\n{{"model_image": {deep}}}\n{{"id": {deep}}}\n{again}\n', "utf-8"
    )
    rows = load_catalog(jsonl).rows
    assert [(r.line, r.ok) for r in rows] == [(1, True), (2, False), (3, False), (4, True)]
    assert all("nested too deep" in (r.error or "") for r in rows[1:3])


@given(
    st.dictionaries(
        st.sampled_from(["model_image", "garment_image", "category", "seed", "id", "mode"]),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=8,
        ),
    )
)
@settings(max_examples=60, deadline=None)
def test_any_jsonl_row_loads_as_a_row_never_an_exception(values: dict[str, Any]) -> None:
    """Whatever values a JSONL row holds (any JSON type, any text, NUL bytes, NaN), loading
    gives a row, valid or invalid with a message; never an exception."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.jsonl"
        path.write_text(json.dumps(values) + "\n", encoding="utf-8")
        for model_name in (None, "tryon-v1.6"):
            (row,) = load_catalog(path, model_name=model_name).rows
            assert row.ok or row.error
            assert row.identity


def test_any_exception_while_reading_a_row_makes_it_invalid(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unforeseen exception inside one row's checks: that row invalid, named with its
    line and the exception; the rows after it load."""
    path = _csv(
        folder,
        "model_image,garment_image,category,seed\n"
        "images/model_0.png,images/garment_0.png,tops,1\n"
        "images/model_0.png,images/garment_0.png,tops,2\n",
    )
    real = _catalog.parse_cell

    def parse(value: Any, kind: str) -> Any:
        if value == "1":
            raise MemoryError("a surprise")
        return real(value, kind)

    monkeypatch.setattr(_catalog, "parse_cell", parse)
    first, second = load_catalog(path).rows
    assert (first.ok, first.line) == (False, 2)
    assert first.error == "cannot read this row: MemoryError: a surprise"
    assert second.ok


def test_a_cell_over_128_kib_loads(folder: Path) -> None:
    """A data URI photo of ~300 KiB in a CSV cell loads (csv's default limit is 128 KiB)."""
    noise = random.Random(7).randbytes(300 * 300 * 3)  # incompressible: a large PNG
    photo = Image.frombytes("RGB", (300, 300), noise)
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert len(uri) > 128 * 1024
    path = _csv(folder, f'model_image,garment_image,category\n"{uri}",images/garment_0.png,tops\n')
    (row,) = load_catalog(path).rows
    assert row.ok, row.error
    assert row.images["model_image"] == uri


def test_rows_are_identified_by_id_else_content(folder: Path) -> None:
    """Identity: the id column, else a hash of the values; a repeat gets #2, and the
    identity does not move when rows are inserted above."""
    base = "images/model_0.png,images/garment_0.png,tops"
    path = _csv(folder, f"id,model_image,garment_image,category\na,{base}\n,{base}\n,{base}\n")
    first = [r.identity for r in load_catalog(path).rows]
    assert first[0] == "id:a"
    assert first[1].startswith("sha:")
    assert first[2] == first[1] + "#2"
    _csv(folder, f"id,model_image,garment_image,category\nnew,{base}\na,{base}\n,{base}\n,{base}\n")
    assert [r.identity for r in load_catalog(path).rows] == ["id:new", *first]


def test_rows_repeating_an_earlier_ones_request_without_an_id_are_bad_rows(
    folder: Path,
) -> None:
    """Rows with no id that ask for what an earlier good row asks for: each a bad row
    naming the first, not sent (the same result, paid for again); rows with ids, or
    differing in any value, are not; nor are repeats of a bad row (already bad)."""
    base = "images/model_0.png,images/garment_0.png,tops"
    other = "images/model_0.png,images/garment_0.png,bottoms"
    bad = "images/none.png,images/garment_0.png,tops"
    text = (
        f"id,model_image,garment_image,category\n,{base}\na,{base}\n,{other}\n,{base}\n,{base}\n"
        f",{bad}\n,{bad}\n"
    )
    rows = load_catalog(_csv(folder, text)).rows
    assert [row.line for row in rows if row.ok] == [2, 3, 4]
    repeats = [(row.line, row.error) for row in rows if not row.ok and "repeats" in str(row.error)]
    assert [line for line, _ in repeats] == [5, 6]
    assert all(
        str(error).startswith("repeats line 2 (it asks for the same") for _, error in repeats
    )
    assert [r.line for r in rows if not r.ok and "no such file" in str(r.error)] == [7, 8]


def test_a_dry_run_streams_the_catalog(folder: Path) -> None:
    """iter_catalog yields rows one at a time: the first row comes before the file is
    read to its end (a dry run holds one row at a time)."""
    path = _csv(folder, "model_image,garment_image,category\n" + "x.png,y.png,tops\n" * 5000)
    rows = iter_catalog(path)
    first = next(rows)
    assert (first.row, first.line, first.ok) == (1, 2, False)
    assert sum(1 for _ in rows) == 4999


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="a#23", min_size=1, max_size=4), max_size=12))
def test_row_identities_are_unique_whatever_the_ids(ids: list[str]) -> None:
    """Ids that repeat or look like a repeat's suffix (a, a, a#2) never share an identity."""
    identities = _identity.unique_identities([f"id:{i}" for i in ids])
    assert len(set(identities)) == len(identities)
    assert [i.split("#")[0] for i in identities] == [f"id:{i}".split("#")[0] for i in ids]
    assert identities == _identity.unique_identities([f"id:{i}" for i in ids])  # stable


def test_a_fifo_or_device_as_an_image_is_an_invalid_row_never_opened(folder: Path) -> None:
    """A named pipe or a device as an image path: that row is invalid with its line and
    the kind of file; the load never blocks on it (it is not opened)."""
    os.mkfifo(folder / "images" / "pipe.png")
    path = _csv(
        folder,
        "model_image,garment_image,category\n"
        "images/model_0.png,images/garment_0.png,tops\n"
        "images/pipe.png,images/garment_0.png,tops\n"
        "images/model_0.png,/dev/null,tops\n",
    )
    found: list[Any] = []
    reader = threading.Thread(target=lambda: found.append(load_catalog(path)), daemon=True)
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # blocked opening the pipe: give it a writer, then fail
        with (folder / "images" / "pipe.png").open("wb"):
            pass
        reader.join()
        pytest.fail("the load blocked on a FIFO")
    (catalog,) = found
    problems = {row.line: row.error for row in catalog.bad}
    assert set(problems) == {3, 4}
    assert "model_image: " in str(problems[3])
    assert "FIFO" in str(problems[3])
    assert "garment_image: " in str(problems[4])
    assert "character device" in str(problems[4])


@pytest.mark.parametrize(
    "row",
    [
        '{"id": "x\\ud800", "model_image": "images/model_0.png", '
        '"garment_image": "images/garment_0.png", "category": "tops"}',
        '{"model_image": "images/\\udfff.png", "garment_image": "images/garment_0.png", '
        '"category": "tops"}',
        '{"\\ud83d": 1, "model_image": "images/model_0.png", '
        '"garment_image": "images/garment_0.png", "category": "tops"}',
        '{"model_image": "images/model_0.png", "garment_image": "images/garment_0.png", '
        '"category": "tops", "seed": {"deep": ["\\ud800"]}}',
    ],
)
def test_a_lone_surrogate_in_jsonl_is_an_invalid_row(folder: Path, row: str) -> None:
    """A JSON escape of half a UTF-16 pair anywhere in a row (id, path, key, nested):
    that row is invalid with its line; the others load and the journal takes them all."""
    good = json.dumps(
        {"model_image": "images/model_0.png", "garment_image": "images/garment_0.png",
         "category": "tops"}
    )  # fmt: skip
    again = good.replace("{", '{"id": "again", ', 1)  # (not a repeat: not sent twice)
    catalog = load_catalog(_csv(folder, f"{good}\n{row}\n{again}\n", "catalog.jsonl"))
    assert [r.ok for r in catalog.rows] == [True, False, True]
    assert catalog.rows[1].line == 2
    assert "lone surrogate" in str(catalog.rows[1].error)
    with Journal.open(folder / "out", meta={}, rows=catalog.rows) as journal:
        assert journal.counts()["invalid"] == 1


@pytest.mark.parametrize(
    ("row", "key"),
    [
        ('"garment_image": "images/garment_0.png", "garment_image": "images/model_0.png"',
         "garment_image"),
        ('"garment_image": "images/garment_0.png", "id": "a", "id": "b"', "id"),
        ('"garment_image": "images/garment_0.png", "seed": {"k": 1, "k": 2}', "k"),
    ],
)  # fmt: skip
def test_a_jsonl_row_naming_a_key_twice_is_an_invalid_row(folder: Path, row: str, key: str) -> None:
    """A JSON object naming a key twice, a column or one nested: which was meant cannot
    be known (a JSON reader keeps the last, silently: the row was sent with it, and a CSV
    header repeating a column is refused). That row is invalid naming the key."""
    line = f'{{"model_image": "images/model_0.png", "category": "tops", {row}}}'
    catalog = load_catalog(_csv(folder, f"{line}\n", "catalog.jsonl"))
    (bad,) = catalog.rows
    assert not bad.ok
    assert f"repeated key {key!r}" in str(bad.error)


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t")])
@pytest.mark.parametrize("broken", ['"images/model_0.png', '"tops'])
def test_an_unclosed_quote_is_a_bad_row_and_swallows_no_later_row(
    folder: Path, suffix: str, sep: str, broken: str
) -> None:
    """An opening quote never closed (first or last column): that row is invalid naming
    the unclosed quote, and each of the 1,000 lines after it is still read as its row,
    so the totals are right (not 2 rows for a 1,002-row file)."""
    good = sep.join(("images/model_0.png", "images/garment_0.png", "tops"))
    bad = good.replace("images/model_0.png" if "model" in broken else "tops", broken, 1)
    header = sep.join(("model_image", "garment_image", "category", "seed"))
    good, bad = good + sep, bad + sep  # (each later row its own seed: no repeat of the first)
    text = "\n".join([header, good, bad, *[f"{good}{seed}" for seed in range(1000, 2000)]]) + "\n"
    rows = load_catalog(_csv(folder, text, "catalog" + suffix)).rows
    assert len(rows) == 1002
    assert [row.line for row in rows] == list(range(2, 1004))
    assert [row.line for row in rows if not row.ok] == [3]
    assert str(rows[1].error).startswith("unclosed quote: ")
    assert "runs on into line 4" in str(rows[1].error)


def test_a_file_of_open_quotes_is_read_in_one_pass(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row opening a quote it never closes: each is its own invalid row, in file
    order, and each line is read again at most once (not once per open quote above it)."""
    given_back: list[int] = []
    original = _records._Taken.give_back

    def give_back(self: Any, lines: list[str]) -> None:
        given_back.append(len(lines))
        original(self, lines)

    monkeypatch.setattr(_records._Taken, "give_back", give_back)
    lines = [f'"images/model_0.png,images/garment_0.png,tops{n}\n' for n in range(3000)]
    path = _csv(folder, "model_image,garment_image,category\n" + "".join(lines))
    rows = load_catalog(path).rows
    assert [row.line for row in rows] == list(range(2, 3002))
    assert all(str(row.error).startswith("unclosed quote") for row in rows[:-1])
    assert not rows[-1].ok  # open at the end of the file: a row short of values
    assert sum(given_back) <= len(lines)


def test_a_catalog_that_is_no_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO (its open would wait for a writer forever) or a folder: CatalogError naming
    it, at once."""
    fifo = tmp_path / "catalog.csv"
    os.mkfifo(fifo)
    with pytest.raises(CatalogError, match="not a regular file"):
        load_catalog(fifo)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(CatalogError, match="not a regular file"):
        load_catalog(folder)


def test_reading_a_catalog_stops_when_asked(tmp_path: Path) -> None:
    """``stop`` set (from the event loop's thread, on a signal): reading ends at the next
    row with CatalogError."""
    catalog = tmp_path / "c.csv"
    catalog.write_text("model_image,garment_image,category\nm.png,g.png,tops\n")
    stop = threading.Event()
    stop.set()
    with pytest.raises(CatalogError, match="reading stopped"):
        load_catalog(catalog, stop=stop)


def test_spaces_around_a_csv_option_are_not_part_of_it(folder: Path) -> None:
    """A spreadsheet's ``tops `` or `` 2.5`` is the option itself, as spaces around an
    image path or a number were already (``tops `` was refused: `category: must be one
    of ...`), and asks for what the plain value does (no repeat paid for)."""
    text = (
        "id,model_image,garment_image,category,garment_photo_type,guidance_scale\n"
        "a,images/model_0.png,images/garment_0.png,tops ,  flat-lay ,2.5\n"
        "b,images/model_0.png,images/garment_0.png,tops,flat-lay, 2.5 \n"
    )
    first, second = load_catalog(_csv(folder, text)).rows
    assert first.ok, first.error
    assert first.request == second.request
    assert first.asks == second.asks


def test_a_csv_cell_of_spaces_is_an_empty_one(folder: Path) -> None:
    """A cell holding only spaces is left out as an empty one is: an id of ``" "`` made
    a row of its own (a repeat with it was sent, and paid for, again) and a seed of
    ``" "`` was refused."""
    text = (
        "id,model_image,garment_image,category,seed\n"
        ",images/model_0.png,images/garment_0.png,tops,\n"
        " ,images/model_0.png,images/garment_0.png,tops,  \n"
    )
    first, second = load_catalog(_csv(folder, text)).rows
    assert first.ok
    assert second.error is not None
    assert second.error.startswith("repeats line 2")
    assert second.label is None
