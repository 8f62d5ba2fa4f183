"""A catalog row's identity, by which the journal knows it across runs and edits.

A row is known by its ``id`` column, else by a hash of its values
(:func:`identity_of`); a repeat gets ``#2``, ``#3``... (:func:`unique_identities`), so
two rows never share one. Its output files are named by :func:`row_key`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from fashn_async._models import ModelRequest, Request

__all__ = [
    "LABEL_COLUMN",
    "asks",
    "digest",
    "file_sha256",
    "identity_of",
    "row_key",
    "unique_identities",
]

#: The column that names a row.
LABEL_COLUMN: Final = "id"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex (read a MiB at a time; blocking)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(functools.partial(fh.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unique_identities(bases: Sequence[str]) -> list[str]:
    """Each row's identity: its base, or for a repeat the first unused ``<base>#2``,
    ``#3``... (unused by any row's base too, so ids ``a``, ``a``, ``a#2`` never collide).

    Two rows never share an identity: the journal knows rows by it, and a shared one
    would make a re-run send one of them again (and be charged for it).
    """
    taken = set(bases)
    given: set[str] = set()
    repeats: Counter[str] = Counter()
    identities = []
    for base in bases:
        identity = base
        if identity in given:
            repeats[base] = max(repeats[base], 1)
            while identity in given or identity in taken:
                repeats[base] += 1
                identity = f"{base}#{repeats[base]}"
        given.add(identity)
        identities.append(identity)
    return identities


def identity_of(values: Mapping[str, Any] | str) -> str:
    """``id:<the id column>`` when the row has one (a string or an integer: ``1`` and
    ``"1"`` are the same id), else ``sha:<hash of its values>``."""
    label = values.get(LABEL_COLUMN) if isinstance(values, Mapping) else None
    if isinstance(label, str | int) and not isinstance(label, bool) and label != "":
        return f"id:{label}"
    canonical = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(canonical.encode(errors="surrogatepass")).hexdigest()
    return f"sha:{digest[:16]}"


def row_key(number: int, values: Mapping[str, Any] | str) -> str:
    """The stem of a row's output files: its number and a hash of its values."""
    canonical = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(canonical.encode(errors="surrogatepass")).hexdigest()
    return f"row{number:05d}_{digest[:8]}"


def asks(request: Request, sources: Mapping[str, str]) -> str:
    """``req:<hash>`` of what a good row sends: the request as the API gets it (every
    option, its default included: written out or left out, the same), each image as
    what it is (``sources``: a file's bytes' hash, so one file however its path is
    written, through a symlink or from a catalog moved, and a photo replaced under its
    name another request; a URL exactly as given)."""
    sent = attrs.asdict(request, recurse=False)
    if isinstance(request, ModelRequest):  # (untyped: a whole number one way, as JSON has it)
        sent["inputs"] = {**_whole(sent["inputs"]), **sources}
    else:
        sent.update(sources)
    return f"req:{digest(json.dumps(sent, sort_keys=True, default=str).encode())}"


def _whole(value: Any) -> Any:
    """``value`` with every float that is a whole number as an int (``2.0``: ``2``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return [_whole(item) for item in value] if isinstance(value, list) else value


def digest(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()[:32]
