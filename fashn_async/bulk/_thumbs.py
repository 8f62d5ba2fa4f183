"""Thumbnails for the report: small JPEGs, made once and kept in ``results/thumbs/``.

A thumbnail shows the image as a viewer would: turned upright by its EXIF orientation
(a portrait phone photo stays portrait), transparency composited on white (a garment
cut-out on a white card, not on black).

An image file's thumbnail is named from its path, size and modification time, so a
later run reuses it and a changed file gets a new one. Outputs get theirs as soon as
they are downloaded, which spreads the work over the job instead of its last minute.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fashn_async._atomic import write_atomically
from fashn_async._images import from_data_uri
from fashn_async.errors import ImageInputError

__all__ = ["THUMBS_DIR", "Thumb", "thumbnail", "thumbnails"]

THUMBS_DIR = "thumbs"
THUMB_SIZE = (176, 220)

#: A file in ``thumbs/`` for an image file, the JPEG bytes for a data URI, or None when
#: the image cannot be read.
Thumb = Path | bytes | None


def thumbnail(source: Path | str, directory: Path) -> Thumb:
    """The thumbnail of ``source`` (an image file or a data URI); see :data:`Thumb`."""
    if isinstance(source, str):
        try:
            data = from_data_uri("thumbnail", source)
        except ImageInputError:
            return None
        return _jpeg(io.BytesIO(data))
    try:
        stat = source.stat()
    except OSError:
        return None
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    target = directory / THUMBS_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.jpg"
    if target.is_file():
        return target
    made = _jpeg(source)
    if made is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    # Several runs' threads may make one thumbnail at once; a cache, remade if lost.
    return write_atomically(target, made, unique=True, durable=False)


def thumbnails(
    sources: Iterable[Path | str], directory: Path, *, workers: int = 4
) -> dict[Path | str, Thumb]:
    """Thumbnails of many images, made in threads (Pillow decodes without the GIL)."""
    unique = list(dict.fromkeys(sources))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        made = pool.map(thumbnail, unique, [directory] * len(unique))
        return dict(zip(unique, made, strict=True))


def _jpeg(source: Path | io.BytesIO) -> bytes | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with the cli extra
        return None
    from PIL import ImageOps

    try:
        with Image.open(source) as opened:
            opened.draft("RGB", THUMB_SIZE)
            image = ImageOps.exif_transpose(opened)
            image.thumbnail(THUMB_SIZE)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.new("RGBA", rgba.size, "white")
                image.alpha_composite(rgba)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=75)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return buffer.getvalue()
