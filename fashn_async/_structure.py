"""Is an image whole? A structural check of its container, without decoding pixels.

Cheap enough to run on every input without Pillow (a walk over the chunks or markers,
plus PNG's CRCs, which zlib computes without holding the GIL). It catches what a
signature check cannot: a file holding only an image's magic bytes, a PNG or JPEG cut
short by an interrupted copy or upload, a damaged chunk. It does not prove the pixels
decode; the optional preparation step (``_prepare``) decodes them.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

from fashn_async._sources import STEPS_PER_PAUSE, let_go

__all__ = ["image_problem"]

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC).
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE: Final = frozenset(range(0xD0, 0xD8)) | {0x01}


def image_problem(data: bytes | bytearray) -> str | None:
    """What is structurally wrong with image ``data``, or None when it looks whole.

    PNG: chunks walked from IHDR to IEND, every CRC checked, at least one IDAT.
    JPEG: markers walked to a frame header and the first scan, and an end-of-image
    marker after it. GIF: header, screen descriptor and trailer. WEBP and BMP: the size
    their header declares is present. TIFF: the first directory is inside the file.
    AVIF/HEIC: something follows the ``ftyp`` box. Unknown signatures: a message too.
    """
    view = memoryview(data)
    if data[:8] == _PNG_SIGNATURE:
        return _png_problem(view)
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_problem(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        if len(data) < 14 or _last_nonzero(view) != 0x3B:  # the trailer, ";"
            return "the GIF is cut short (no trailer)"
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = int.from_bytes(data[4:8], "little") + 8
        return _declared_size("WEBP", size, len(data), minimum=20)
    if data[:2] == b"BM":
        size = int.from_bytes(data[2:6], "little")
        return _declared_size("BMP", size, len(data), minimum=26)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        order = "little" if data[:2] == b"II" else "big"
        first = int.from_bytes(data[4:8], order)  # type: ignore[arg-type]
        if len(data) < 8 or not 8 <= first <= len(data) - 2:
            return "the TIFF is cut short (its first image directory is missing)"
        return None
    if data[4:8] == b"ftyp":
        box = int.from_bytes(data[0:4], "big")
        if box < 8 or len(data) <= box:
            return "the AVIF/HEIC file is cut short (nothing after its ftyp box)"
        return None
    return "the data is not an image this client knows"


#: A PNG chunk at least this long (bytes) is followed by a pause of its own.
_BIG_CHUNK = 1 << 16


def _pause_now(steps: int) -> int:
    """Count one step of a walk; every STEPS_PER_PAUSE steps, let the loop in."""
    steps += 1
    if steps >= STEPS_PER_PAUSE:
        let_go()
        return 0
    return steps


#: Bytes searched in one call by the scans from the end (a whole-image call would hold
#: the GIL for tens of milliseconds on a 50 MiB file).
_WINDOW = 1 << 20


def _last_nonzero(view: memoryview) -> int | None:
    """The last byte of ``view`` that is not 0 (GIF files may be zero-padded), or None."""
    end = len(view)
    while end > 0:
        start = max(end - _WINDOW, 0)
        kept = bytes(view[start:end]).rstrip(b"\x00")
        if kept:
            return kept[-1]
        end = start
        let_go()
    return None


def _has_end_marker(data: bytes | bytearray, start: int) -> bool:
    """Whether the JPEG end-of-image marker (FF D9) is at or after ``start``, searched
    from the end a window at a time."""
    end = len(data)
    while end - start >= 2:
        low = max(end - _WINDOW, start)
        if data.rfind(b"\xff\xd9", low, end) >= 0:
            return True
        end = low + 1  # the marker may straddle two windows
        let_go()
    return False


def _declared_size(kind: str, declared: int, actual: int, *, minimum: int) -> str | None:
    if actual < minimum or declared < minimum or declared > actual:
        return f"the {kind} is cut short ({actual} of {max(declared, minimum)} bytes)"
    return None


def _png_problem(view: memoryview) -> str | None:
    pos, seen_data, end_of_data = 8, False, len(view)
    first, steps = True, 0
    while True:
        if pos + 12 > end_of_data:
            return "the PNG is cut short (no IEND chunk)"
        length, kind = struct.unpack_from(">I4s", view, pos)
        end = pos + 12 + length
        if end > end_of_data:
            return f"the PNG is cut short inside its {kind.decode('latin-1')!r} chunk"
        (crc,) = struct.unpack_from(">I", view, end - 4)
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            return f"the PNG is damaged (its {kind.decode('latin-1')!r} chunk fails its CRC)"
        if first and (kind != b"IHDR" or length != 13):
            return "the PNG has no IHDR header chunk"
        if first and 0 in struct.unpack_from(">II", view, pos + 8):
            return "the PNG declares a width or height of 0"
        first = False
        # Between chunks the loop may want the GIL (in a worker thread): after a big
        # chunk, or after many small ones.
        if length >= _BIG_CHUNK:
            let_go()
            steps = 0
        else:
            steps = _pause_now(steps)
        if kind == b"IDAT":
            seen_data = True
        elif kind == b"IEND":
            return None if seen_data else "the PNG holds no image data (no IDAT chunk)"
        pos = end


def _jpeg_problem(data: bytes | bytearray) -> str | None:
    pos, size, seen_frame = 2, len(data), False
    steps = 0
    while True:
        while pos < size and data[pos] == 0xFF and pos + 1 < size and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > size:
            return "the JPEG is cut short (no image data)"
        if data[pos] != 0xFF:
            return "the JPEG is damaged (a segment does not start with a marker)"
        marker = data[pos + 1]
        if marker in _JPEG_STANDALONE:
            pos += 2
            steps = _pause_now(steps)
            continue
        if marker == 0xD9:
            return "the JPEG ends before any image data"
        if pos + 4 > size:
            return "the JPEG is cut short (inside a segment header)"
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > size:
            return "the JPEG is cut short (inside a segment)"
        if marker in _JPEG_SOF:
            seen_frame = True
        if marker == 0xDA:
            if not seen_frame:
                return "the JPEG has no frame header before its image data"
            if not _has_end_marker(data, pos + 2 + length):
                return "the JPEG is cut short (no end-of-image marker)"
            return None
        pos += 2 + length
        steps = _pause_now(steps)
