"""The job's hold on its output folder: a lock file and a disk reserve.

- ``.journal.lock``: an OS file lock held while a job runs, so a second job on the same
  folder is refused (:class:`JournalBusyError`); the kernel releases it on any exit,
  ``kill -9`` included. The file stays: deleting a lock file others may wait on is unsafe.
  The folder itself is locked too (a lock on the lock file alone went with the file: a
  second job started after it was deleted took a new one and paid for rows again).
- ``.journal.reserve``: :data:`RESERVE_BYTES` kept free for the journal; a job stopped
  by a full disk frees all but its head (:func:`release_reserve`) so that it can still
  record its stop, and the next run makes it whole again. The head
  (:data:`RESCUE_BYTES`) holds the prediction ids the journal itself refused
  (:mod:`fashn_async.bulk._rescue`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO, Final

from fashn_async._atomic import write_atomically
from fashn_async.bulk._rows import JournalBusyError
from fashn_async.errors import ConfigurationError

__all__ = [
    "EARLIER_JOB_FILES",
    "Hold",
    "LOCK_NAME",
    "RESCUE_BYTES",
    "RESERVE_BYTES",
    "OUTPUT_NAME",
    "RESERVE_NAME",
    "lock",
    "refuse_an_orphaned_job",
    "earlier_outputs",
    "release_reserve",
    "reserve",
]

LOCK_NAME: Final = ".journal.lock"
RESERVE_NAME: Final = ".journal.reserve"
#: Bytes kept free for the journal: enough for a stop to record every row's state.
RESERVE_BYTES: Final = 256 * 1024
#: The reserve's head, which releasing it keeps: written in place, it takes prediction
#: ids on a disk too full for the journal.
RESCUE_BYTES: Final = 16 * 1024


def release_reserve(directory: Path) -> bool:
    """Free the reserve's space but its head (:data:`RESCUE_BYTES`); False when there
    was none to free."""
    path = directory / RESERVE_NAME
    try:
        if path.stat().st_size <= RESCUE_BYTES:
            return False
        os.truncate(path, RESCUE_BYTES)
    except OSError:
        return False
    return True


def reserve(directory: Path) -> None:
    """Keep RESERVE_BYTES of the disk for the journal (see the module docstring)."""
    path = directory / RESERVE_NAME
    if path.is_file() and path.stat().st_size == RESERVE_BYTES:
        return
    write_atomically(path, b"\0" * RESERVE_BYTES)


def _locked_folder(directory: Path) -> int | None:
    """A descriptor of ``directory`` holding its lock; None where the file system cannot
    lock a folder (some network ones), the lock file's lock then standing alone.

    Raises:
        BlockingIOError: another process holds it.
    """
    import fcntl  # (called only where there is one)

    try:
        folder = os.open(directory, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(folder)
        raise
    except OSError:
        os.close(folder)
        return None
    return folder


class Hold:
    """The locks a job holds on its folder: the lock file's and the folder's own."""

    def __init__(self, handle: IO[str], folder: int | None) -> None:
        self._handle, self._folder = handle, folder

    def close(self) -> None:
        """Let go of both (the kernel does as much on any exit)."""
        self._handle.close()
        if self._folder is not None:
            os.close(self._folder)
            self._folder = None


def lock(directory: Path) -> Hold:
    """Hold the folder for this process (released by the kernel on any exit, kill -9 too).

    Raises:
        JournalBusyError: another process holds the lock file or the folder.
    """
    handle = (directory / LOCK_NAME).open("a+", encoding="utf-8")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, no check
        return Hold(handle, None)
    folder = None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        folder = _locked_folder(directory)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise JournalBusyError(
            f"another fashn-async job (pid {holder}) is running on {directory}; "
            "wait for it to end, or stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return Hold(handle, folder)


#: Files a job leaves in its folder besides the journal: their presence beside an empty
#: or missing journal means an earlier job ran there.
EARLIER_JOB_FILES: Final = ("manifest.jsonl", "report.html", RESERVE_NAME)


#: An output a job saved: ``row<number>_<hash>_<n>.<ext>`` (``_identity.row_key``, then
#: ``_outputs.output_filename``). Outputs left beside no journal were paid for.
OUTPUT_NAME: Final = re.compile(r"row\d{5,}_[0-9a-f]{8}_\d+\.(?:png|jpe?g|webp|gif)")


def earlier_outputs(directory: Path) -> list[str]:
    """The names of an earlier job's outputs in ``directory`` (at most the first two)."""
    try:
        with os.scandir(directory) as entries:
            found = (entry.name for entry in entries if OUTPUT_NAME.fullmatch(entry.name))
            return [name for _, name in zip(range(2), found, strict=False)]
    except OSError:
        return []


def refuse_an_orphaned_job(directory: Path, journal: str) -> None:
    """Refuse to start afresh where an earlier job left its files but no journal: its
    rows may be paid for, and a fresh journal would send them all again.

    Raises:
        ConfigurationError: naming the files found (its outputs among them).
    """
    found = [name for name in EARLIER_JOB_FILES if (directory / name).exists()]
    outputs = earlier_outputs(directory)
    if outputs:
        found.append(f"outputs ({', '.join(outputs)}, ...)")
    if found:
        raise ConfigurationError(
            f"{directory} holds an earlier job's {', '.join(found)} but its journal "
            f"({journal}) is missing or empty: starting afresh would send, and pay "
            "for, every row again. Give --out a new folder, or move those files away if "
            "nothing of that job was sent"
        )
