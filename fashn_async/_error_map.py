"""The API's error answers, mapped onto the exception tree of :mod:`fashn_async.errors`.

One table per kind of answer: a failed prediction's ``{name, message}``, and an HTTP
error answer (either body shape, the status code when the name is unknown). The tree
itself stays in ``errors``, which exports exception classes only.
"""

from __future__ import annotations

import http
import re
from typing import Any

from fashn_async._names import CURRENT_PREDICTION_ERRORS, HTTP_ERROR_CODES, V1_PREDICTION_ERRORS
from fashn_async.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConcurrencyLimitExceededError,
    ContentModerationError,
    ImageLoadError,
    InputValidationError,
    LoRALoadError,
    NotFoundError,
    NSFWError,
    OutOfCreditsError,
    PhotoTypeError,
    PipelineError,
    PoseError,
    PredictionError,
    PredictionInternalError,
    RateLimitError,
    RateLimitExceededError,
    RequestError,
    ServerError,
    ThirdPartyError,
    ThirdPartyProviderError,
    UnknownPredictionError,
)

__all__ = ["api_error_from_response", "prediction_error_from_payload"]


_PREDICTION_ERRORS: dict[str, type[PredictionError]] = {
    "PipelineError": PipelineError,
    "RequestError": RequestError,
    "ImageLoadError": ImageLoadError,
    "NSFWError": NSFWError,
    "PoseError": PoseError,
    "InputValidationError": InputValidationError,
    "PhotoTypeError": PhotoTypeError,
    "ContentModerationError": ContentModerationError,
    "LoRALoadError": LoRALoadError,
    "ThirdPartyError": ThirdPartyError,
    "3rdPartyProviderError": ThirdPartyProviderError,
    "InternalServerError": PredictionInternalError,
}
assert set(_PREDICTION_ERRORS) == set(V1_PREDICTION_ERRORS + CURRENT_PREDICTION_ERRORS)

_API_ERRORS_BY_NAME: dict[str, type[APIError]] = {
    "BadRequest": BadRequestError,
    "UnauthorizedAccess": AuthenticationError,
    "NotFound": NotFoundError,
    "RateLimitExceeded": RateLimitExceededError,
    "ConcurrencyLimitExceeded": ConcurrencyLimitExceededError,
    "OutOfCredits": OutOfCreditsError,
    "InternalServerError": ServerError,
}

#: An error code as the API names them (``OutOfCredits``, ``3rdPartyProviderError``):
#: letters, digits and ``_``, at least one letter or digit (``_`` alone names nothing).
_CODE = re.compile(r"(?=\w{1,100}$)_*[A-Za-z0-9]\w*", re.ASCII)

_API_ERRORS_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    429: RateLimitError,
}


#: The most of a server's error name and message an error keeps, in characters (a
#: 2 MB message was printed whole on one line).
MAX_NAME, MAX_MESSAGE = 200, 2000


def capped(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters, saying how many more it had."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} characters more, not kept)"


def prediction_error_from_payload(
    name: str | None, message: str | None, *, prediction_id: str | None
) -> PredictionError:
    """Build the error of a failed prediction from its ``{name, message}`` (each cut to
    :data:`MAX_NAME` and :data:`MAX_MESSAGE` characters)."""
    name, message = capped(name, MAX_NAME), capped(message, MAX_MESSAGE)
    name = name or "UnknownError"
    cls = _PREDICTION_ERRORS.get(name, UnknownPredictionError)
    return cls(message or "the prediction failed", name=name, prediction_id=prediction_id)


def _error_fields(body: Any) -> tuple[str | None, str | None]:
    """Name and message from either error body shape, or ``(None, None)``."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    message = body.get("message")
    if isinstance(error, dict):  # v1: {"error": {"name": ..., "message": ...}}
        name, message = error.get("name"), error.get("message", message)
    else:  # current: {"error": "<Code>", "message": ...}
        name = error
    return (
        capped(name, MAX_NAME) if isinstance(name, str) else None,
        capped(message, MAX_MESSAGE) if isinstance(message, str) else None,
    )


def api_error_from_response(
    status_code: int, body: Any, *, retry_after: float | None = None
) -> APIError:
    """Build the error for an HTTP error answer, from either body shape.

    An answer that names no code (a proxy's or gateway's page, or its JSON whose
    ``error`` is text such as ``"Bad Gateway"``: the API's names are codes, NOTES.md) is
    named by its HTTP status (``Forbidden``, ``BadGateway``), never by one of the API's
    codes (a firewall's 403 is no ``UnauthorizedAccess``), its text kept as the message;
    its class is still the status's.
    """
    name, message = _error_fields(body)
    if name is not None and not _CODE.fullmatch(name):
        message, name = message or f"HTTP {status_code}: {name}", None
    if name is None:
        name = _status_name(status_code)
        message = message or f"HTTP {status_code}, not the API's answer (no error code)"
    cls = _API_ERRORS_BY_NAME.get(name or "")
    # The status decides the kind where a name does not fit it (NOTES.md pairs each code
    # with its status): a 502 saying "OutOfCredits" is a server's failure, not a final one.
    if status_code >= 500:
        cls = ServerError
    elif cls is None or cls is ServerError or HTTP_ERROR_CODES.get(name) != status_code:
        cls = _API_ERRORS_BY_STATUS.get(status_code, APIError)  # (a 403 "RateLimitExceeded")
    if not issubclass(cls, RateLimitError) and cls is not OutOfCreditsError:
        retry_after = retry_after if status_code == 503 else None
    return cls(
        message or f"the API answered HTTP {status_code}",
        name=name,
        status_code=status_code,
        retry_after=retry_after,
    )


def _status_name(status_code: int) -> str:
    """``BadGateway`` for 502: the HTTP reason phrase in the API's naming (``ServerError``
    for a status without one)."""
    try:
        phrase = http.HTTPStatus(status_code).phrase
    except ValueError:
        return "ServerError"
    words = re.sub(r"[^A-Za-z0-9]+", " ", phrase.replace("'", "")).split()
    return "".join(word[:1].upper() + word[1:] for word in words)  # (418: ImATeapot)
