"""Atomic file writes: one helper (fashn_async._atomic), whole or nothing, fsynced, and
used by every module of the package that replaces a file."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import fashn_async
from fashn_async._atomic import append, commit, partial_path, write_atomically

PACKAGE = Path(fashn_async.__file__).parent


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    """Text, bytes or chunks replace the target; no temporary file is left."""
    target = tmp_path / "manifest.jsonl"
    target.write_text("old\n")
    assert write_atomically(target, "nouveau\n") == target
    assert target.read_text(encoding="utf-8") == "nouveau\n"
    write_atomically(target, [b"a", b"b"])
    assert target.read_bytes() == b"ab"
    write_atomically(target, b"c", unique=True, durable=False)
    assert target.read_bytes() == b"c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    """A disk that fills mid-write: the target keeps its old content, whole; the
    temporary file is removed; the error is raised."""
    target = tmp_path / "report.html"
    target.write_text("the old report")

    def chunks() -> Iterator[bytes]:
        yield b"half of a new"
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, chunks())
    assert target.read_text() == "the old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_the_data_and_the_rename_are_flushed_to_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A durable write fsyncs the file before the rename, then its folder (write_atomically
    and a streamed append + commit alike); a cache write (durable=False) does not."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(tmp_path / "a.png", b"x")
    assert synced == ["file", "folder"]
    target = tmp_path / "b.png"
    partial = partial_path(target)
    append(partial, [b"1", b"2"])
    append(partial, [b"3"])
    commit(partial, target)
    assert target.read_bytes() == b"123"
    assert synced == ["file", "folder"] * 2
    write_atomically(tmp_path / "thumb.jpg", b"x", durable=False)
    assert len(synced) == 4


def test_no_other_module_replaces_files_its_own_way() -> None:
    """No module of the package but _atomic renames, replaces or fsyncs a file: every
    atomic write goes through the one helper."""
    pattern = re.compile(r"\bos\.(replace|rename|fsync)\(|\.rename\(")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "_atomic.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


def test_a_folder_in_the_way_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    """A folder where the file goes: an OSError, the folder untouched, no partial file."""
    (tmp_path / "out.png").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomically(tmp_path / "out.png", [b"x"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
