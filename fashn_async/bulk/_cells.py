"""What a catalog cell means: its text read as the option's type (:func:`parse_cell`),
or, for a model's free-form inputs, as what it looks like (:func:`guess_cell`)."""

from __future__ import annotations

from typing import Any, Final

__all__ = ["guess_cell", "parse_cell"]

_TRUE: Final = frozenset({"true", "yes", "1", "on"})
_FALSE: Final = frozenset({"false", "no", "0", "off"})


def parse_cell(value: Any, kind: str) -> Any:
    """A CSV cell (a string) as the option's type; JSON values pass as they are."""
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
