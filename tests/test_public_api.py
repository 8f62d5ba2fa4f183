"""The public surface: one sorted __all__ that matches what is public."""

from __future__ import annotations

import fashn_async


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and lists exactly the public names of the package."""
    public = {n for n in vars(fashn_async) if not n.startswith("_")} | {"__version__"}
    modules = {"errors"}
    assert fashn_async.__all__ == sorted(fashn_async.__all__)
    assert set(fashn_async.__all__) == public - (
        {n for n in public if type(getattr(fashn_async, n)).__name__ == "module"} - modules
    )


def test_version() -> None:
    """The version comes from the package metadata."""
    from importlib.metadata import version

    assert fashn_async.__version__ == version("fashn-async")
