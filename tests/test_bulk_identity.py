"""A row already sent, written another way, is not sent (and paid for) again.

Rows are known by their id, else by a hash of their values; a catalog re-exported, moved
or tidied between runs spells the same requests differently (``./images/a.png``, an
absolute path, an empty column added, ``TRUE`` for ``true``, an id a spreadsheet re-saved
``000`` as ``0``). Each such row is matched to the row already sent by what it asks for;
a new request, or a repeat of one within the catalog, is still sent.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from bulk_support import journal_counts, read_manifest, rerun, write_images
from PIL import Image

from fashn_async.testing import Emulator

Row = dict[str, str]
COLUMNS = ["id", "model_image", "garment_image", "category", "restore_background"]


def write(path: Path, rows: list[Row], columns: list[str] = COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def first_rows(folder: Path, *, ids: bool) -> list[Row]:
    """Four distinct requests; two model photos under names with accents."""
    write_images(folder, 2, 2)
    for n in range(2):
        (folder / "images" / f"model_{n}.png").rename(folder / "images" / f"modèle été {n}.png")
    return [
        {
            "id": f"00{n}" if ids else "",
            "model_image": f"images/modèle été {n % 2}.png",
            "garment_image": f"images/garment_{n // 2}.png",
            "category": "tops",
            "restore_background": "true",
        }
        for n in range(4)
    ]


#: Ways a spreadsheet, a script or a person writes the same rows again.
SPELLINGS: dict[str, Callable[[Path, Row], Row]] = {
    "./ paths": lambda _, r: {**r, "model_image": "./" + r["model_image"]},
    "absolute paths": lambda folder, r: {
        **r,
        "model_image": str(folder / r["model_image"]),
        "garment_image": str(folder / r["garment_image"]),
    },
    "the other Unicode form": lambda _, r: {
        **r,
        "model_image": unicodedata.normalize("NFD", r["model_image"]),
    },
    "TRUE for true": lambda _, r: {**r, "restore_background": "TRUE"},
    "ids re-saved as numbers": lambda _, r: {**r, "id": str(int(r["id"])) if r["id"] else ""},
    "defaults written out": lambda _, r: {**r, "seed": "42", "guidance_scale": "2.0"},
    "every way at once": lambda folder, r: {
        **r,
        "id": str(int(r["id"])) if r["id"] else "",
        "model_image": "./" + unicodedata.normalize("NFD", r["model_image"]),
        "garment_image": str(folder / r["garment_image"]),
        "restore_background": "TRUE",
    },
}


@pytest.mark.parametrize("ids", [False, True], ids=["no ids", "ids"])
@pytest.mark.parametrize("spelling", list(SPELLINGS))
async def test_rows_already_sent_written_another_way_are_not_sent_again(
    emulator: Emulator, tmp_path: Path, spelling: str, ids: bool
) -> None:
    """The job done, the catalog written again another way (empty columns added too):
    a re-run sends nothing, every row stays done, and it says why; the next re-run (the
    journal now knows the new spelling) says nothing of it."""
    rows = first_rows(tmp_path, ids=ids)
    out = tmp_path / "out"
    code, printed = await rerun(emulator, write(tmp_path / "catalog.csv", rows), out)
    assert code == 0, printed
    assert emulator.report().credits_used == 4
    again = [SPELLINGS[spelling](tmp_path, row) for row in rows]
    catalog = write(tmp_path / "again.csv", again, [*COLUMNS, "seed", "guidance_scale"])
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    assert emulator.report().credits_used == 4, printed
    assert journal_counts(out) == {"done": 4}
    assert "changed after it was sent" not in printed  # the same requests
    new_ids = any(a["id"] != r["id"] for a, r in zip(again, rows, strict=True))
    renamed = again != rows and (not ids or new_ids)
    assert ("written another way" in printed) == renamed
    code, printed = await rerun(emulator, catalog, out)
    assert code == 0, printed
    assert "written another way" not in printed
    assert emulator.report().credits_used == 4


async def test_a_new_request_is_sent_and_a_repeat_is_not(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Next to rows written another way: a row asking for something new is sent, and a
    second row asking for what another row of the catalog asks for (a repeat, without an
    id) is a bad row, not sent (it was sent, and paid for, before repeats were refused):
    only rows already sent are matched, each once."""
    rows = first_rows(tmp_path, ids=False)
    out = tmp_path / "out"
    assert (await rerun(emulator, write(tmp_path / "catalog.csv", rows), out))[0] == 0
    again = [{**row, "model_image": "./" + row["model_image"]} for row in rows]
    again.append({**rows[0], "category": "bottoms"})  # new
    again.append({**rows[1]})  # a repeat of a row the catalog has
    code, printed = await rerun(emulator, write(tmp_path / "again.csv", again), out)
    assert code == 1, printed
    assert "line 7: repeats line 3 (it asks for the same, and has no id): not sent" in printed
    assert emulator.report().credits_used == 5
    assert journal_counts(out) == {"done": 5, "invalid": 1}


async def test_a_catalog_moved_matches_its_files_not_its_path_text(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The catalog moved into a subfolder (its paths now ``../images/...``): nothing is
    sent again. Another catalog in another folder naming other photos by the same
    relative names: those are other requests, sent."""
    rows = first_rows(tmp_path, ids=True)
    out = tmp_path / "out"
    assert (await rerun(emulator, write(tmp_path / "catalog.csv", rows), out))[0] == 0
    (tmp_path / "csv").mkdir()
    moved = [{**r, **{c: "../" + r[c] for c in ("model_image", "garment_image")}} for r in rows]
    code, printed = await rerun(emulator, write(tmp_path / "csv" / "catalog.csv", moved), out)
    assert code == 0, printed
    assert emulator.report().credits_used == 4
    other = tmp_path / "other"
    other.mkdir()
    first_rows(other, ids=True)  # the same names, other pixels
    for path in (other / "images").iterdir():
        Image.open(path).rotate(90).save(path)
    code, printed = await rerun(emulator, write(other / "catalog.csv", rows), out)
    assert code == 0, printed
    # The same ids asking for other photos: edits of rows already sent, each said, none
    # sent (as documented: another id sends it), none taken for the rows before.
    assert printed.count("changed after it was sent") == 4
    assert emulator.report().credits_used == 4


async def test_a_photo_replaced_under_its_name_is_another_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A photo replaced, the row's text unchanged: reported as changed after it was sent
    (nothing sent under the same id, as documented); given another id, as the note
    advises, it is sent."""
    rows = first_rows(tmp_path, ids=True)
    only = tmp_path / "images" / "only.png"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(only)
    rows[0]["garment_image"] = "images/only.png"
    out = tmp_path / "out"
    assert (await rerun(emulator, write(tmp_path / "catalog.csv", rows), out))[0] == 0
    Image.open(only).rotate(90).convert("RGB").save(only)
    Image.new("RGB", (64, 64), (90, 9, 9)).save(only)
    code, printed = await rerun(emulator, write(tmp_path / "catalog.csv", rows), out)
    assert "line 2, id '000' changed after it was sent" in printed
    assert emulator.report().credits_used == 4
    rows[0]["id"] = "000-v2"
    code, printed = await rerun(emulator, write(tmp_path / "catalog.csv", rows), out)
    assert code == 0, printed
    assert emulator.report().credits_used == 5


async def test_two_ids_a_spreadsheet_made_one_keep_their_own_rows(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Ids ``1.10`` and ``1.1`` re-saved as ``1.1`` and ``1.1``: each row still matched to
    what it asked for (not the one with its id): nothing sent, nothing said changed."""
    rows = first_rows(tmp_path, ids=True)
    rows[1]["id"], rows[2]["id"] = "1.10", "1.1"
    out = tmp_path / "out"
    assert (await rerun(emulator, write(tmp_path / "catalog.csv", rows), out))[0] == 0
    merged = [{**r, "id": "1.1"} if r["id"] == "1.10" else r for r in rows]
    code, printed = await rerun(emulator, write(tmp_path / "merged.csv", merged), out)
    assert code == 0, printed
    assert "changed after it was sent" not in printed
    assert emulator.report().credits_used == 4
    by_line = {entry["line"]: entry for entry in read_manifest(out)}
    assert by_line[3]["inputs"]["model_image"] == rows[1]["model_image"]


async def test_one_file_through_a_symlink_and_two_files_in_two_unicode_forms(
    emulator: Emulator, tmp_path: Path
) -> None:
    """``link/../images/a.png`` where ``link`` is a symlinked folder opens another file than
    its text says: matched by the file it opens. Two files whose names differ only in
    Unicode form are two photos: both sent."""
    rows = first_rows(tmp_path, ids=False)[:2]
    out = tmp_path / "out"
    assert (await rerun(emulator, write(tmp_path / "catalog.csv", rows), out))[0] == 0
    elsewhere = tmp_path / "elsewhere" / "deep"
    elsewhere.mkdir(parents=True)
    (tmp_path / "link").symlink_to(elsewhere)
    (tmp_path / "elsewhere" / "images").symlink_to(tmp_path / "images")
    again = [{**r, "model_image": "link/../" + r["model_image"]} for r in rows]
    code, printed = await rerun(emulator, write(tmp_path / "again.csv", again), out)
    assert code == 0, printed
    assert emulator.report().credits_used == 2
    nfc = unicodedata.normalize("NFC", "images/café.png")
    nfd = unicodedata.normalize("NFD", "images/café.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / nfc)
    Image.new("RGB", (64, 64), (3, 2, 1)).save(tmp_path / nfd)
    two = [{**rows[0], "model_image": name} for name in (nfc, nfd)]
    code, printed = await rerun(emulator, write(tmp_path / "two.csv", two), out)
    assert code == 0, printed
    assert emulator.report().credits_used == 4


async def test_an_edit_and_a_row_asking_for_the_old_request_in_either_order(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Row ``x`` sent; then ``x`` edited to ask for another garment, and a new row ``z``
    asking for what ``x`` asked before, in either order: ``z`` is that sent row (taken,
    named by its line), and ``x``'s new request is sent; once. (Before: with ``x`` first,
    every run of that catalog ended in a ValueError before sending anything.)"""
    write_images(tmp_path, 1, 2)
    one = {"model_image": "images/model_0.png", "category": "tops"}
    first = [{**one, "id": "x", "garment_image": "images/garment_0.png"}]
    out = tmp_path / "out"
    assert (await rerun(emulator, write(tmp_path / "c1.csv", first), out))[0] == 0
    edited = {**one, "id": "x", "garment_image": "images/garment_1.png"}
    old = {**one, "id": "z", "garment_image": "images/garment_0.png"}
    for n, rows in enumerate([[edited, old], [old, edited]]):
        folder = out if n == 0 else tmp_path / "out2"
        if n == 1:
            assert (await rerun(emulator, write(tmp_path / "c1.csv", first), folder))[0] == 0
        code, printed = await rerun(emulator, write(tmp_path / f"c{n + 2}.csv", rows), folder)
        assert code == 0, printed
        line = 3 if rows[1] is old else 2
        assert f"the row at line {line} asks for what rows already sent asked for" in printed
    assert emulator.report().credits_used == 4  # per folder: x, then x's new request
