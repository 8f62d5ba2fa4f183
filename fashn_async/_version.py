"""The installed distribution's version: one source, ``pyproject.toml``, read at import."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("fashn-async")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
