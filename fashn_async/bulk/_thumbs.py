"""Thumbnails for the report: small JPEGs, made once and kept in ``results/thumbs/``.

A thumbnail shows the image as a viewer would: turned upright by its EXIF orientation
(a portrait phone photo stays portrait), transparency composited on white (a garment
cut-out on a white card, not on black).

An image file's thumbnail is named from its path, size and modification time, so a
later run reuses it and a changed file gets a new one. Outputs get theirs as soon as
they are downloaded, which spreads the work over the job instead of its last minute.

Memory stays bounded whatever the images: a JPEG is decoded already reduced (``draft``),
an image larger than :data:`BIG_PIXELS` once decoded (a 12000x9000 PNG: 432 MB) is
decoded alone (:func:`thumbnails` makes those one after another in one thread, since
glibc keeps what a thread freed for that thread's next allocation), and one past
Pillow's decompression-bomb limit gets no thumbnail; Pillow's warning for images near
that limit is not printed.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import io
import os
import threading
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fashn_async._atomic import partial_writer, write_atomically
from fashn_async._images import from_data_uri
from fashn_async.errors import ImageInputError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["THUMBS_DIR", "Thumb", "thumbnail", "thumbnails"]

THUMBS_DIR = "thumbs"
THUMB_SIZE = (176, 220)
#: Images with more pixels than this, as decoded (a JPEG's reduced by ``draft``), are
#: decoded one at a time: a 12000x9000 PNG takes 324 MB as RGB.
BIG_PIXELS: Final = 16_000_000
#: EXIF orientations that turn the image a quarter: its box is the thumbnail's, turned.
_QUARTER_TURNS: Final = frozenset({5, 6, 7, 8})
_ORIENTATION: Final = 0x0112
#: Held while an image larger than BIG_PIXELS is decoded.
_BIG_DECODE = threading.Lock()
#: Held while an image is opened with Pillow's bomb warning silenced: the warnings
#: filters are the process's, so the threads of this module take turns changing them.
_OPENING = threading.Lock()

#: A file in ``thumbs/`` for an image file, the JPEG bytes for a data URI, or None when
#: the image cannot be read.
Thumb = Path | bytes | None


class _Big(enum.Enum):
    """An image past BIG_PIXELS, left for :func:`thumbnails` to make in its own thread."""

    LATER = enum.auto()


def thumbnail(source: Path | str, directory: Path) -> Thumb:
    """The thumbnail of ``source`` (an image file or a data URI); see :data:`Thumb`."""
    made = _thumbnail(source, directory, alone=True)
    return None if made is _Big.LATER else made  # (never LATER: made alone)


def thumbnails(
    sources: Iterable[Path | str], directory: Path, *, workers: int = 4
) -> dict[Path | str, Thumb]:
    """Thumbnails of many images, made in threads (Pillow decodes without the GIL); the
    ones past BIG_PIXELS after those, one by one in this thread."""
    unique = list(dict.fromkeys(sources))
    _remove_orphaned_partials(directory / THUMBS_DIR)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        made = zip(unique, pool.map(_thumbnail, unique, [directory] * len(unique)), strict=True)
        first = dict(made)
    return {
        source: thumbnail(source, directory) if thumb is _Big.LATER else thumb
        for source, thumb in first.items()
    }


def _remove_orphaned_partials(folder: Path) -> None:
    """Remove the partial thumbnails of processes that are gone (a job stopped at once,
    by a second signal or ``kill -9``, mid-write); another live run's are left."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        writer = partial_writer(name)
        if writer is None or writer == os.getpid():
            continue
        try:
            os.kill(writer, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                (folder / name).unlink()
        except OSError:  # alive, another user's: left
            continue


def _thumbnail(source: Path | str, directory: Path, *, alone: bool = False) -> Thumb | _Big:
    """:func:`thumbnail`; when not ``alone``, ``_Big.LATER`` for an image past BIG_PIXELS."""
    if isinstance(source, str):
        try:
            data = from_data_uri("thumbnail", source)
        except ImageInputError:
            return None
        return _jpeg(io.BytesIO(data), alone=alone)
    try:
        stat = source.stat()
    except OSError:
        return None
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    target = directory / THUMBS_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.jpg"
    if target.is_file():
        return target
    made = _jpeg(source, alone=alone)
    if not isinstance(made, bytes):
        return made
    target.parent.mkdir(parents=True, exist_ok=True)
    # Several runs' threads may make one thumbnail at once; a cache, remade if lost.
    return write_atomically(target, made, unique=True, durable=False)


def _jpeg(source: Path | io.BytesIO, *, alone: bool) -> bytes | _Big | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with the cli extra
        return None
    from PIL import ImageOps

    try:
        with _open(source) as opened:
            # A JPEG decodes at 1/2, 1/4 or 1/8 of its size (either way up).
            opened.draft("RGB", (max(THUMB_SIZE), max(THUMB_SIZE)))
            big = opened.width * opened.height > BIG_PIXELS
            if big and not alone:
                return _Big.LATER
            with _BIG_DECODE if big else contextlib.nullcontext():  # (a PNG's EXIF decodes)
                # Made to the box before it is turned upright: decoded once, never copied.
                turned = opened.getexif().get(_ORIENTATION) in _QUARTER_TURNS
                opened.thumbnail((THUMB_SIZE[1], THUMB_SIZE[0]) if turned else THUMB_SIZE)
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.new("RGBA", rgba.size, "white")
                image.alpha_composite(rgba)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=75)
    except Exception:  # (a decoder's own: EOFError, RuntimeError... a damaged HEIC)
        return None  # no thumbnail: the row's own check says what is wrong
    return buffer.getvalue()


def _open(source: Path | io.BytesIO) -> Image.Image:
    """The image, opened (not decoded); past Pillow's bomb limit, ``DecompressionBombError``,
    and no ``DecompressionBombWarning`` printed below it."""
    from PIL import Image

    with _OPENING, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(source)
