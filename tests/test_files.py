"""The one atomic write: the old file or the new one, never a part, nothing left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fashn_async._files import partial_for, write_atomically


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    """The target holds exactly the new bytes; no partial file stays beside it."""
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    assert write_atomically(target, [b"new ", b"bytes"]) == target
    assert target.read_bytes() == b"new bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path: Path) -> None:
    """Chunks that raise halfway: the old file is untouched and the partial is removed."""
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"half of it"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(target, chunks())
    assert target.read_bytes() == b"old"
    assert not partial_for(target).exists()


def test_a_folder_in_the_way_is_refused_before_writing(tmp_path: Path) -> None:
    """A folder where the file goes is an IsADirectoryError; nothing is written."""
    (tmp_path / "out.png").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomically(tmp_path / "out.png", [b"x"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_writers_tagged_apart_use_their_own_partial(tmp_path: Path) -> None:
    """A tag (a process id, say) gives a writer a partial name of its own."""
    target = tmp_path / "t.jpg"
    assert partial_for(target) != partial_for(target, tag="123")
    assert partial_for(target, tag="123").name == ".t.jpg.123.part"
