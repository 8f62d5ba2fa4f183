"""Files written whole or not at all: the package's one atomic write.

A file is written under a hidden partial name beside its target (``.<name>.part``),
flushed to disk (``fsync``) and then renamed over the target in one step, so a reader,
or the next run after a crash or power loss, finds the old file or the new one, never a
part. Synchronous on purpose: callers run these in a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["append", "commit", "partial_for", "start_partial", "write_atomically"]


def partial_for(target: Path, *, tag: str = "") -> Path:
    """The partial file ``target`` is written under (``tag`` keeps concurrent writers
    of one target, other processes say, apart)."""
    return target.with_name(f".{target.name}{'.' + tag if tag else ''}.part")


def start_partial(target: Path, partial: Path) -> None:
    """Create ``partial`` empty; refuse at once if a folder stands where ``target`` goes.

    Raises:
        IsADirectoryError: ``target`` is a folder.
        OSError: ``partial`` cannot be created.
    """
    if target.is_dir():
        raise IsADirectoryError(21, "is a folder", str(target))
    partial.write_bytes(b"")


def append(partial: Path, chunks: Iterable[bytes]) -> None:
    """Append ``chunks`` to ``partial``."""
    with partial.open("ab") as fh:
        for chunk in chunks:
            fh.write(chunk)


def commit(partial: Path, target: Path) -> None:
    """Flush ``partial`` to disk, then rename it over ``target`` in one step."""
    with partial.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, target)


def write_atomically(target: Path, chunks: Iterable[bytes], *, tag: str = "") -> Path:
    """Replace ``target`` with ``chunks``, whole or not at all; return ``target``.

    Raises:
        OSError: writing failed (no room, no permission, a folder in the way); the
            partial file is removed and ``target`` is as it was.
    """
    partial = partial_for(target, tag=tag)
    try:
        start_partial(target, partial)
        append(partial, chunks)
        commit(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
