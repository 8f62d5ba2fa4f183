"""Every exception fashn-async raises.

One tree, rooted at :class:`FashnError`, so ``except FashnError`` catches all of them and
nothing from aiohttp or cattrs ever reaches the caller::

    FashnError
    ├── ConfigurationError            bad client options, no API key (ValueError)
    ├── InvalidRequestError           a request that fails validation locally (ValueError)
    │   └── ImageInputError           missing file, not an image, bad URL or data URI
    ├── ClientClosedError             the client is not open (RuntimeError)
    ├── BatchClosedError              a batch used after it was closed (RuntimeError)
    ├── BatchInputError               a batch's input raised while being read
    ├── EventHookError                a batch's event hook raised
    ├── EventLoopError                used from an event loop it was not opened on (RuntimeError)
    ├── CoordinationError             the Redis server sharing the limits is unreachable
    ├── TransportError                the network failed us
    │   ├── ConnectError              no connection: the request was never sent
    │   │   ├── ConnectTimeoutError   no connection within the timeout (TimeoutError too)
    │   │   └── CertificateError      the server's TLS certificate is not trusted (verify=)
    │   ├── NetworkTimeoutError       no answer in time (TimeoutError)
    │   ├── ConnectionDroppedError    the connection broke after the request went out
    │   ├── RemoteProtocolError       the answer broke HTTP (malformed status line, headers)
    │   └── SubmissionUncertainError  POST /v1/run may have created a prediction; not re-sent
    ├── APIError                      an HTTP error answer (to a POST: nothing created)
    │   ├── BadRequestError           400 BadRequest (and v1 InputValidationError bodies)
    │   ├── AuthenticationError       401 UnauthorizedAccess
    │   ├── NotFoundError             404 NotFound
    │   ├── RateLimitError            429, with .retry_after: waiting helps
    │   │   ├── RateLimitExceededError        RateLimitExceeded
    │   │   └── ConcurrencyLimitExceededError ConcurrencyLimitExceeded
    │   ├── OutOfCreditsError         429 OutOfCredits: final, waiting does not help
    │   └── ServerError               5xx: InternalServerError, a gateway's BadGateway...
    ├── PredictionError               a prediction ended with status "failed"
    │   ├── PipelineError, RequestError, ImageLoadError, NSFWError, PoseError,
    │   │   InputValidationError, PhotoTypeError                     (v1 names)
    │   ├── ContentModerationError, LoRALoadError, ThirdPartyError,
    │   │   ThirdPartyProviderError ("3rdPartyProviderError"),
    │   │   PredictionInternalError ("InternalServerError")          (current names)
    │   └── UnknownPredictionError    any other name, kept in .name
    ├── PredictionCanceledError       the prediction ended with status "canceled"
    ├── PollingError                  a created prediction's status calls kept failing;
    │                                 it was not cancelled (.prediction_id names it)
    ├── DeadlineExceededError         run(deadline=...) ran out; a cancel was sent (TimeoutError)
    └── DownloadError                 an output could not be fetched or written
        └── SaveError                 writing it failed: the folder is a file, no room, ...

Every error has ``.name`` (the API's error name where there is one), ``.message``,
``.prediction_id`` and ``.status_code`` when known, and ``.retry_after`` (seconds) for 429s.
No error ever carries the API key: no aiohttp error is chained (``__cause__``,
``__context__``), and none of our attributes holds a request's headers
(tests/test_network_secrets.py walks everything reachable from every kind).

``OutOfCreditsError`` is deliberately not a :class:`RateLimitError`: a generic
"wait and retry on RateLimitError" loop must not spin on an empty account.
"""

from __future__ import annotations

from typing import Any

from fashn_async._redact import safe_repr

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BatchClosedError",
    "BatchInputError",
    "CertificateError",
    "ClientClosedError",
    "ConcurrencyLimitExceededError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionDroppedError",
    "ContentModerationError",
    "CoordinationError",
    "DeadlineExceededError",
    "DownloadError",
    "EventHookError",
    "EventLoopError",
    "FashnError",
    "ImageInputError",
    "ImageLoadError",
    "InputValidationError",
    "InvalidRequestError",
    "LoRALoadError",
    "NSFWError",
    "NetworkTimeoutError",
    "NotFoundError",
    "OutOfCreditsError",
    "PhotoTypeError",
    "PipelineError",
    "PollingError",
    "PoseError",
    "PredictionCanceledError",
    "PredictionError",
    "PredictionInternalError",
    "RateLimitError",
    "RateLimitExceededError",
    "RemoteProtocolError",
    "RequestError",
    "SaveError",
    "ServerError",
    "SubmissionUncertainError",
    "ThirdPartyError",
    "ThirdPartyProviderError",
    "TransportError",
    "UnknownPredictionError",
]


class FashnError(Exception):
    """Base class of every error raised by fashn-async."""

    #: The API's error name, when the error comes from the API.
    name: str | None
    message: str
    prediction_id: str | None
    status_code: int | None
    retry_after: float | None

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        prediction_id: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name if name is not None else type(self).default_name
        self.prediction_id = prediction_id
        self.status_code = status_code
        self.retry_after = retry_after

    #: The name an instance gets when none is given.
    default_name: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.name:
            parts.append(self.name)
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.prediction_id:
            parts.append(f"prediction {self.prediction_id}")
        prefix = f"[{', '.join(parts)}] " if parts else ""
        return f"{prefix}{self.message}"

    @safe_repr
    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, name={self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes survive pickling (multiprocessing, journals).
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[FashnError], message: str, state: dict[str, Any]) -> FashnError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigurationError(FashnError, ValueError):
    """A configuration value is wrong (no API key, ``Limits(margin=nan)``, ``timeout="5"``),
    raised when the option is given, by every configuration class and keyword option;
    the message names the option, the value and what is accepted."""


class InvalidRequestError(FashnError, ValueError):
    """A request failed validation locally; nothing was sent."""


class ImageInputError(InvalidRequestError):
    """An input image is unusable: missing file, not an image, bad URL or data URI."""


class ClientClosedError(FashnError, RuntimeError):
    """The client was used outside ``async with`` or after it was closed."""


class BatchClosedError(FashnError, RuntimeError):
    """A batch was iterated after it was closed: by ``aclose()``, the end of its ``async
    with`` block, ``raise_on_error``, or its client closing. A closed batch never restarts."""


class BatchInputError(FashnError):
    """The iterable given to ``batch()`` raised while the batch read it: raised after the
    items read before it have finished and been yielded; its exception is ``__cause__``."""


class EventHookError(FashnError):
    """A hook of a batch's :class:`~fashn_async.BatchEvents` raised: it fails that item,
    and the batch raises one after its running items finish; ``__cause__`` is the hook's."""


class EventLoopError(FashnError, RuntimeError):
    """The client was used from an event loop other than the one it was opened on: an
    aiohttp session, and so a client, belongs to the loop of its ``async with``; make one
    client per event loop (per ``asyncio.run()``). Also raised when it is opened with no
    asyncio loop running (under trio: the client is asyncio's, uvloop's included)."""


class CoordinationError(FashnError):
    """The Redis server that shares the key's limits could not be reached at start (the
    message names its URL, any password masked). Once running, losing Redis is not an
    error: each process keeps to its share of the limits until it is back."""


class TransportError(FashnError):
    """The network failed: no usable HTTP answer arrived."""

    sends: int = 1  #: times it went out (aiohttp may send a GET twice)
    stale: bool = False  #: sent on a kept-alive connection found closed: may go again


class ConnectError(TransportError):
    """No connection could be made; the request was never sent."""


class NetworkTimeoutError(TransportError, TimeoutError):
    """The server did not answer in time."""


class ConnectTimeoutError(ConnectError, NetworkTimeoutError):
    """No connection was made within ``connect_timeout``; the request was never sent."""


class CertificateError(ConnectError):
    """The server (or a proxy inspecting TLS) showed a certificate the client does not
    trust (``AsyncFashn(verify=...)``); nothing was sent, and it is not tried again."""


class RemoteProtocolError(TransportError):
    """The answer broke HTTP (a malformed status line or headers), after sending."""


class ConnectionDroppedError(TransportError):
    """The connection broke after the request was sent."""


class SubmissionUncertainError(TransportError):
    """POST /v1/run was sent and no usable answer came back: the prediction may exist.

    No answer at all (a timeout, a dropped connection, a malformed status line), or one
    that proves nothing (a gateway's HTML 502/504 page, a 200 without a readable id). It
    is not re-sent automatically, because a blind retry is charged twice. Check your
    account or re-submit knowingly. ``status_code`` is the HTTP status, if one came.
    """

    default_name = "SubmissionUncertain"


class APIError(FashnError):
    """The API answered with an HTTP error; no prediction was created."""


class BadRequestError(APIError):
    """400: the API refused the request body."""

    default_name = "BadRequest"


class AuthenticationError(APIError):
    """401: the API key is missing or wrong."""

    default_name = "UnauthorizedAccess"


class NotFoundError(APIError):
    """404: no such prediction (or it is no longer tracked)."""

    default_name = "NotFound"


class RateLimitError(APIError):
    """429: a limit of the API key was hit; ``retry_after`` says when to try again."""


class RateLimitExceededError(RateLimitError):
    """429 RateLimitExceeded: too many requests in the window."""

    default_name = "RateLimitExceeded"


class ConcurrencyLimitExceededError(RateLimitError):
    """429 ConcurrencyLimitExceeded: too many predictions in progress; wait for a slot."""

    default_name = "ConcurrencyLimitExceeded"


class OutOfCreditsError(APIError):
    """429 OutOfCredits: the account has no credits left. Final: retrying cannot help;
    not a :class:`RateLimitError` (whose waits help), so a retry-on-429 loop stops."""

    default_name = "OutOfCredits"


class ServerError(APIError):
    """5xx: the API or a gateway before it failed (on a POST: before a prediction
    existed); ``name`` is the API's, or else the HTTP status's (``BadGateway``)."""

    default_name = "InternalServerError"


class PredictionError(FashnError):
    """A prediction ended with status ``failed``; ``name`` is the API's error name."""


class PipelineError(PredictionError):
    """The generation pipeline failed."""


class RequestError(PredictionError):
    """The API could not process the request."""


class ImageLoadError(PredictionError):
    """The API could not load an input image."""


class NSFWError(PredictionError):
    """An input was flagged by the NSFW filter."""


class PoseError(PredictionError):
    """The model's pose could not be detected or used."""


class InputValidationError(PredictionError):
    """The API found the inputs invalid."""


class PhotoTypeError(PredictionError):
    """The garment photo type could not be handled."""


class ContentModerationError(PredictionError):
    """Content moderation rejected an input."""


class LoRALoadError(PredictionError):
    """A LoRA could not be loaded."""


class ThirdPartyError(PredictionError):
    """A third-party service failed."""


class ThirdPartyProviderError(PredictionError):
    """A third-party provider failed (API name ``3rdPartyProviderError``)."""


class PredictionInternalError(PredictionError):
    """The API failed internally while running the prediction (``InternalServerError``)."""


class UnknownPredictionError(PredictionError):
    """A failure whose name this version does not know; ``name`` keeps it."""


class PredictionCanceledError(FashnError):
    """The prediction ended with status ``canceled``."""

    default_name = "Canceled"


class PollingError(FashnError):
    """A prediction was created, and its status calls kept failing: polling gave up.

    The prediction was not cancelled: it may still be running, or be done (and charged).
    ``prediction_id`` names it, so ``await client.wait(error.prediction_id)`` collects it
    later. ``status_code`` is the last status answer's HTTP status, if one came (404: the
    API no longer tracks the prediction, NOTES.md), and ``__cause__`` is the last status
    error itself.
    """

    default_name = "PollingFailed"

    @classmethod
    def after(cls, error: FashnError, prediction_id: str) -> PollingError:
        """The error for giving up on ``prediction_id`` after ``error``."""
        what = error.name or type(error).__name__
        return cls(
            f"polling gave up after {what}: {error.message}; the prediction was not "
            "cancelled: it may still be running, or be done and charged",
            prediction_id=prediction_id,
            status_code=error.status_code,
            retry_after=error.retry_after,
        )


class DeadlineExceededError(FashnError, TimeoutError):
    """``run(..., deadline=...)`` ran out; a cancel was sent to ``prediction_id``."""

    default_name = "DeadlineExceeded"


class DownloadError(FashnError):
    """An output could not be downloaded or written to disk."""


class SaveError(DownloadError):
    """An output could not be written to disk; ``path`` names where.

    For instance: the folder given is a file, a file of the output's name is a folder,
    no permission, the disk is full. Nothing is left half-written.
    """

    default_name = "SaveError"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        #: The file or folder that could not be written.
        self.path = path
