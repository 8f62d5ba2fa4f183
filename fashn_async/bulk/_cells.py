"""What a catalog cell means: its text read as the option's type (:func:`parse_cell`),
or, for a model's free-form inputs, as what it looks like (:func:`guess_cell`); and what a
row's image files come to once sent as base64 (:func:`body_problem`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from fashn_async._sources import MAX_BODY_BYTES
from fashn_async._validators import is_finite_number

__all__ = ["body_problem", "guess_cell", "json_type", "parse_cell", "printable"]

#: Bytes a request body holds besides its images' base64: the JSON, the data URI
#: prefixes, the options (a generous bound, so a row this passes is never refused later).
_BODY_BESIDES_IMAGES: Final = 8 * 1024

_TRUE: Final = frozenset({"true", "yes", "1", "on"})
_FALSE: Final = frozenset({"false", "no", "0", "off"})


def parse_cell(value: Any, kind: str) -> Any:
    """A CSV cell (a string) as the option's type; JSON values pass as they are, but for
    an integer given for a number, made one: ``2`` and ``2.0`` ask for the same."""
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value) if is_finite_number(value) else value  # (one too big: refused)
    if not isinstance(value, str) or kind not in ("bool", "int", "float"):
        return value
    text = value.strip()
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {value!r:.60}")
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(
            f"expected {'an integer' if kind == 'int' else 'a number'}, got {value!r:.60}"
        ) from None


def guess_cell(value: Any) -> Any:
    """A CSV cell of a model input: true/false, an integer, a number, or the text."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return value


def body_problem(images: Iterable[Path | str]) -> str | None:
    """Why a request with these images (files sent as base64, data URIs and URLs as they
    are) would be refused before it is sent (over :data:`MAX_BODY_BYTES`, the limit the
    run checks), or None; the remedy in the command line's words (``--prepare-images``)."""
    size = _BODY_BESIDES_IMAGES
    for image in images:
        if not isinstance(image, Path):
            size += len(image)  # a data URI is its own size as sent (ASCII)
            continue
        try:
            size += 4 * -(-os.path.getsize(image) // 3)
        except OSError:  # (a file that cannot be read is refused by its own check)
            continue
    if size <= MAX_BODY_BYTES:
        return None
    return (
        f"the request would be about {size / 2**20:.1f} MiB with its images as base64, over "
        f"the API's {MAX_BODY_BYTES // 2**20} MiB: run with --prepare-images (the command "
        "line's default: each image resized to 2000 px and re-encoded), or give image URLs"
    )


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (``object``, ``array``, ``boolean``...)."""
    names = {dict: "an object", list: "an array", bool: "a boolean", float: "a number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def printable(values: Mapping[str, Any]) -> dict[str, Any]:
    """The row's values as JSON can hold them (anything else as its text)."""
    try:
        return dict(json.loads(json.dumps(values, ensure_ascii=False, default=str)))
    except (ValueError, RecursionError, TypeError):
        return {}
