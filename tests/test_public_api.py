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


def test_errors_exports_exactly_its_exception_classes() -> None:
    """errors.__all__ is sorted and lists every exception class of the module, nothing else."""
    from fashn_async import errors

    exceptions = {
        name
        for name, value in vars(errors).items()
        if not name.startswith("_")
        and isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert errors.__all__ == sorted(errors.__all__)
    assert set(errors.__all__) == exceptions


def test_type_aliases_name_what_users_pass() -> None:
    """ImageInput, Request and BatchInput are the types the public calls take."""
    import os
    from typing import get_args, get_type_hints

    from fashn_async import AsyncFashn, BatchInput, ImageInput, Request, TryOnRequest

    assert get_type_hints(TryOnRequest)["model_image"] == ImageInput
    assert get_type_hints(TryOnRequest)["garment_image"] == ImageInput
    assert {str, bytes, os.PathLike[str]} <= set(get_args(ImageInput))
    assert set(get_args(Request)) == {TryOnRequest, fashn_async.ModelRequest}
    assert set(get_args(Request)) <= set(get_args(BatchInput))
    assert fashn_async.Prediction in get_args(BatchInput)
    hints = get_type_hints(AsyncFashn.batch)
    assert BatchInput in get_args(get_args(hints["requests"])[0])


def test_configuration_is_keyword_only() -> None:
    """AsyncFashn takes every option by keyword (as httpx does); positional is a TypeError."""
    import inspect

    import pytest

    from fashn_async import AsyncFashn

    parameters = list(inspect.signature(AsyncFashn).parameters.values())
    assert parameters
    assert {p.kind for p in parameters} == {inspect.Parameter.KEYWORD_ONLY}
    with pytest.raises(TypeError):
        AsyncFashn("key")  # type: ignore[misc]


def test_both_results_share_one_base_and_one_save() -> None:
    """TryOnResult and BatchResult are Results; save() is written once, on the base."""
    from fashn_async import BatchResult, TryOnResult
    from fashn_async._results import Result

    assert issubclass(TryOnResult, Result)
    assert issubclass(BatchResult, Result)
    assert TryOnResult.save is BatchResult.save is Result.save
    assert TryOnResult(id="p1", output=("u",))._stem() == "p1"
    assert BatchResult(index=7, request=fashn_async.Prediction("p"))._stem() == "000007"


def test_public_signatures_name_only_public_types() -> None:
    """Every class a public method or function is annotated with is exported (or stdlib).

    A user can then name in their own annotations whatever ``AsyncFashn.save`` or
    ``batch()`` takes and gives (``Result`` was once private).
    """
    import importlib
    import inspect
    import pkgutil
    import typing

    exported = {getattr(fashn_async, n) for n in fashn_async.__all__ if n != "errors"}
    exported |= {getattr(fashn_async.errors, n) for n in fashn_async.errors.__all__}

    def classes(hint: object) -> typing.Iterator[type]:
        if isinstance(hint, type):
            yield hint
        for arg in typing.get_args(hint):
            yield from classes(arg)

    namespace: dict[str, object] = {}  # names imported only under TYPE_CHECKING too
    for info in pkgutil.walk_packages(fashn_async.__path__, "fashn_async."):
        if not info.name.startswith(("fashn_async.testing", "fashn_async.__main__")):
            namespace.update(vars(importlib.import_module(info.name)))
    #: Made or called by AsyncFashn only, never by a user: their private types are fine.
    internal = {"Batch.__init__", "RedisCoordination.coordinator", "ImagePreparation.preparer"}
    private = set()
    for name in fashn_async.__all__:
        value = getattr(fashn_async, name)
        members = [value] if inspect.isfunction(value) else []
        if inspect.isclass(value):
            members = [
                m
                for n, m in vars(value).items()
                if (not n.startswith("_") or n == "__init__") and inspect.isfunction(m)
            ]
        for member in members:
            if f"{name}.{member.__name__}" in internal:
                continue
            for hint in typing.get_type_hints(member, localns=namespace).values():
                for cls in classes(hint):
                    if cls.__module__.startswith("fashn_async") and cls not in exported:
                        private.add(f"{name}.{member.__name__}: {cls.__qualname__}")
    assert private == set()
