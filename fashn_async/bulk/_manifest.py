"""``manifest.jsonl``: one line per input row, rewritten whole from the journal."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashn_async._atomic import write_atomically
from fashn_async.bulk._rows import RowRecord, State

__all__ = ["MANIFEST_NAME", "manifest_line", "write_manifest"]

MANIFEST_NAME = "manifest.jsonl"


def manifest_line(record: RowRecord) -> dict[str, Any]:
    """The manifest entry of one row (``row``: its place in the catalog, None for a row
    sent by an earlier run and since removed from the catalog)."""
    message = record.error_message
    if record.position is None and record.state != State.DONE:  # (its note spoke of re-runs)
        gone = "no longer in the catalog: its record is kept, and it is never sent again"
        message = f"{gone} (before: {message})" if message else gone
    return {
        "row": record.position,
        "line": record.line,
        "id": record.label,
        "inputs": record.inputs,
        "prediction_id": record.prediction_id,
        "status": record.state,
        "files": record.files,
        "error_name": record.error_name,
        "error_message": message,
    }


def write_manifest(directory: Path, records: Sequence[RowRecord]) -> Path:
    """Write ``manifest.jsonl`` (rows in order) atomically; return its path."""
    text = "".join(
        json.dumps(_strict(manifest_line(record)), ensure_ascii=False, allow_nan=False) + "\n"
        for record in records
    )
    return write_atomically(directory / MANIFEST_NAME, text)


def _strict(value: Any) -> Any:
    """``value`` with every NaN or infinity (an invalid row's input, as read) as the text
    JSON parsers accept (``"NaN"``, ``"Infinity"``): strict JSON, which jq and
    JavaScript read."""
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # 'NaN', 'Infinity', '-Infinity'
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value
