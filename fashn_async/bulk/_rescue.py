"""Prediction ids the journal could not take, kept where a full disk still takes them.

A POST's answer, the row's prediction id, is what a stop must never lose: without it the
row is ``uncertain``, and sending it again may pay twice. When the journal refuses the
``submitted`` write (a full disk), the id is written into the head of the journal's
reserve file (:data:`~fashn_async.bulk._folder.RESCUE_BYTES`, which releasing the
reserve keeps), in place: overwriting bytes a file already holds takes no new space on
the file systems a job meets (ext4, xfs, tmpfs; on a copy-on-write one, btrfs or zfs, it
may fail like any write, and then the job names the row and id in its output).

Each record is one JSON line, ``{"row": 3, "sends": 1, "id": "..."}``; the zero bytes
after the last one mark the end. The journal takes them back
(:meth:`~fashn_async.bulk._journal.Journal.take_rescued`) before a stopped run settles,
or else when the next run opens it, before anything is sent.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Final

import attrs

from fashn_async._atomic import overwrite
from fashn_async.bulk._catalog import CatalogRow
from fashn_async.bulk._folder import RESCUE_BYTES, RESERVE_NAME

__all__ = ["Rescued", "forget", "keep", "kept", "taken_note"]

#: The longest record kept (a prediction id is far shorter; a longer one is not kept).
_LONGEST: Final = 512


@attrs.frozen
class Rescued:
    """A row's prediction id the journal refused: the answer to the row's ``sends``-th
    POST (so that it is never mistaken for the answer to a later one)."""

    row: int
    sends: int
    prediction_id: str


def keep(directory: Path, row: int, sends: int, prediction_id: str) -> bool:
    """Add a record to the reserve's head, in place and flushed to the disk; False when
    it could not be written (the head is full, the file gone, the disk failing)."""
    line = json.dumps({"row": row, "sends": sends, "id": prediction_id}, separators=(",", ":"))
    data = (line + "\n").encode("utf-8")
    if len(data) > _LONGEST:
        return False
    path = directory / RESERVE_NAME
    try:
        head = _records(path)
        if head and not head.endswith(b"\n"):  # one cut short by a crash: kept apart
            data = b"\n" + data
        if len(head) + len(data) > RESCUE_BYTES:
            return False
        overwrite(path, len(head), data)
    except OSError:
        return False
    return True


def kept(directory: Path) -> list[Rescued]:
    """The records in the reserve's head (a line that cannot be read is skipped: a write
    cut short by a crash)."""
    try:
        head = _records(directory / RESERVE_NAME)
    except OSError:
        return []
    found = []
    for line in head.splitlines():
        try:
            record = json.loads(line)
            found.append(Rescued(int(record["row"]), int(record["sends"]), str(record["id"])))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def forget(directory: Path) -> None:
    """Zero the reserve's head, in place (best effort: a record left behind is taken
    back only by a row it still fits, see :meth:`Journal.take_rescued`)."""
    path = directory / RESERVE_NAME
    with contextlib.suppress(OSError):
        used = len(_records(path))
        if used:
            overwrite(path, 0, b"\0" * used)


def taken_note(row: CatalogRow | None, prediction_id: str) -> str:
    """What a person reads of an id the journal took back from the reserve."""
    return (
        f"line {row.line if row is not None else '?'}: prediction {prediction_id}, which "
        f"the last run could not write to the journal, was found in {RESERVE_NAME}: it is "
        "collected, not sent again"
    )


def _records(path: Path) -> bytes:
    """The reserve's head up to its first zero byte: the records written so far."""
    with path.open("rb") as fh:
        return fh.read(RESCUE_BYTES).split(b"\0", 1)[0]
