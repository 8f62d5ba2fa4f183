"""attrs validators shared by the configuration classes (Rate, Polling, RetryPolicy)."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["positive"]


def positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Accept a real number above zero (not a bool); name the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")
