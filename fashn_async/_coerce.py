"""What a caller hands in, made a request: the one place user input becomes one.

``AsyncFashn.run()``/``submit()`` (keyword fields), ``AsyncFashn.batch()`` (items of
several forms) and a bulk job's catalog rows all build their
:class:`~fashn_async._models.TryOnRequest` or :class:`~fashn_async._models.ModelRequest`
here, so a field is refused with the same message whichever way it came in; the
request classes then validate every value at construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from fashn_async._models import ModelRequest, Request, TryOnRequest
from fashn_async.errors import InvalidRequestError

__all__ = ["coerce_request", "request_from"]


def coerce_request(item: Any, *, kind: type[TryOnRequest] | None = None) -> Request:
    """Turn ``item`` into a request.

    Args:
        item: A TryOnRequest or ModelRequest (returned as is); a mapping of TryOnRequest
            fields, or of ``model_name`` and ``inputs`` for a ModelRequest; or a
            ``(model_image, garment_image, category)`` tuple.
        kind: ``TryOnRequest`` to read a mapping as TryOnRequest fields only (keyword
            fields of ``run()``); ``None`` picks by the mapping's keys.

    Raises:
        InvalidRequestError: the item is of no accepted type, has unknown or missing
            fields, a value that fails validation, or misbehaves when read (a mapping
            whose ``keys()`` raises, say); the message names the problem.
    """
    try:
        return _coerce(item, kind)
    except InvalidRequestError:
        raise
    except Exception as exc:  # a mapping or value that misbehaves when read
        raise InvalidRequestError(
            f"could not be read as a request: {type(exc).__name__}: {exc}"
        ) from exc


def request_from(request: Request | None, fields: Mapping[str, Any]) -> Request:
    """The request of ``run()``/``submit()``: a request object, or TryOnRequest's fields.

    Raises:
        InvalidRequestError: both or neither kind given, an object of another type, or a
            field that :func:`coerce_request` refuses.
    """
    if request is None:
        return coerce_request(fields, kind=TryOnRequest)
    if fields:
        raise InvalidRequestError("pass either a request object or keyword fields, not both")
    if not isinstance(request, TryOnRequest | ModelRequest):
        raise InvalidRequestError(
            f"expected a TryOnRequest or ModelRequest, got {type(request).__name__}"
        )
    return request


def _coerce(item: Any, kind: type[TryOnRequest] | None) -> Request:
    if isinstance(item, TryOnRequest | ModelRequest):
        return item
    if isinstance(item, Mapping):
        return _from_mapping(item, kind)
    if isinstance(item, tuple):
        if len(item) != 3:
            raise InvalidRequestError(
                "a tuple item must be (model_image, garment_image, category), "
                f"got {len(item)} value(s)"
            )
        return TryOnRequest(model_image=item[0], garment_image=item[1], category=item[2])
    raise InvalidRequestError(
        "a batch item must be a TryOnRequest, a ModelRequest, a Prediction, a dict of "
        "request fields or a (model_image, garment_image, category) tuple, got "
        f"{type(item).__name__}"
    )


def _from_mapping(item: Mapping[Any, Any], kind: type[TryOnRequest] | None) -> Request:
    fields = dict(item)
    odd = [key for key in fields if not isinstance(key, str)]
    if odd:
        raise InvalidRequestError(f"field names must be strings, got {odd[0]!r:.40}")
    cls: type[TryOnRequest | ModelRequest] = (
        kind
        if kind is not None
        else ModelRequest
        if "model_name" in fields or "inputs" in fields
        else TryOnRequest
    )
    known = attrs.fields_dict(cls)
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise InvalidRequestError(
            f"unknown field(s) for {cls.__name__}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    required = [name for name, a in known.items() if a.default is attrs.NOTHING]
    missing = [name for name in required if name not in fields]
    if missing:
        raise InvalidRequestError(f"missing field(s) for {cls.__name__}: {', '.join(missing)}")
    return cls(**fields)
