"""Files written whole or not at all: the one way the package replaces a file.

A file is written to a temporary name beside its target (``.<name>.part``), flushed to
the disk (``fsync``), and renamed over the target (``os.replace``, atomic on one file
system); the folder is then flushed too, so the rename survives a power cut. A reader
sees the old file or the new one, never half of one; a write that fails (a full disk)
leaves the target as it was and removes its temporary file.

Used for downloaded outputs (:func:`fashn_async._outputs.save_output`, which streams
into the temporary file with :func:`append` and ends with :func:`commit`) and the bulk
job's manifest, report, thumbnails and disk reserve (:func:`write_atomically`). The one
write that is not whole or nothing, :func:`overwrite`, is for a full disk: it writes
into space a file already holds.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["append", "commit", "overwrite", "partial_path", "partial_writer", "write_atomically"]


#: A ``unique`` temporary file's name: ``.<name>.<pid>-<thread>.part``.
_UNIQUE = re.compile(r"\..+\.(\d+)-\d+\.part")


def partial_writer(name: str) -> int | None:
    """The process id in a ``unique`` temporary file's ``name`` (:func:`partial_path`),
    or None if it is no such name."""
    match = _UNIQUE.fullmatch(name)
    return None if match is None else int(match[1])


def partial_path(target: Path, *, unique: bool = False) -> Path:
    """The temporary file a write of ``target`` goes through.

    Args:
        unique: Name it for this process and thread, for targets that several writers
            may make at once (a shared cache); else ``.<name>.part``.
    """
    if unique:
        return target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.part")
    return target.with_name(f".{target.name}.part")


def write_atomically(
    target: Path,
    data: bytes | str | Iterable[bytes],
    *,
    unique: bool = False,
    durable: bool = True,
) -> Path:
    """Replace ``target`` with ``data`` (text is written as UTF-8); return ``target``.

    Args:
        unique: See :func:`partial_path`.
        durable: Flush to the disk before the rename (``False`` only for a cache whose
            loss costs nothing but remaking it).

    Raises:
        OSError: the write failed; ``target`` is as it was, no temporary file is left.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    chunks = [data] if isinstance(data, bytes) else data
    partial = partial_path(target, unique=unique)
    try:
        with partial.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    if durable:
        _sync_folder(target.parent)
    return target


def append(partial: Path, chunks: Iterable[bytes]) -> None:
    """Add ``chunks`` to a temporary file that :func:`commit` will put in place."""
    with partial.open("ab") as fh:
        for chunk in chunks:
            fh.write(chunk)


def commit(partial: Path, target: Path) -> None:
    """Flush ``partial`` to the disk and rename it over ``target`` (see the module
    docstring). The caller removes ``partial`` if this raises.

    Raises:
        OSError: flushing or renaming failed; ``target`` is as it was.
    """
    fd = os.open(partial, os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, target)
    _sync_folder(target.parent)


def overwrite(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` over bytes ``path`` holds, from ``offset``, and flush it to the
    disk. It takes no new space (where the file system does not copy on write), so it
    works on a full disk; but a crash may leave part of ``data`` written, which the
    reader must tell from a whole record.

    Raises:
        OSError: the file is missing, or the write failed.
    """
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to the disk, where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows opens no folders; the rename is as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder: nothing more to do
        pass
    finally:
        os.close(fd)
