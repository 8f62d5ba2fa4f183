"""Public methods document every error they raise, by names that exist."""

from __future__ import annotations

import inspect
import re

import pytest

from fashn_async import AsyncFashn, errors

METHODS = ["run", "submit", "status", "cancel", "wait", "credits", "batch", "save"]


@pytest.mark.parametrize("name", METHODS)
def test_public_method_lists_its_errors(name: str) -> None:
    """Each public call has a Raises section naming real exception classes."""
    doc = inspect.getdoc(getattr(AsyncFashn, name)) or ""
    assert "\nRaises:\n" in doc, f"AsyncFashn.{name} has no Raises section"
    section = doc.split("\nRaises:\n", 1)[1]
    named = re.findall(r"^    (\w+):", section, re.MULTILINE)
    assert named, f"AsyncFashn.{name}: an empty Raises section"
    for error in named:
        assert error == "Exception" or issubclass(getattr(errors, error), errors.FashnError), (
            f"AsyncFashn.{name} names {error}, not an error of fashn_async.errors"
        )
