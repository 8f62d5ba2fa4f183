"""Names the API uses, as pure data.

Shared by the client and the emulator (``fashn_async.testing``): the two are independent
readings of the API reference and share nothing else.
"""

from __future__ import annotations

#: Error names a failed prediction can carry in the v1 reference.
V1_PREDICTION_ERRORS: tuple[str, ...] = (
    "PipelineError",
    "RequestError",
    "ImageLoadError",
    "NSFWError",
    "PoseError",
    "InputValidationError",
    "PhotoTypeError",
)

#: Error names the current API adds for failed predictions.
CURRENT_PREDICTION_ERRORS: tuple[str, ...] = (
    "ContentModerationError",
    "LoRALoadError",
    "ThirdPartyError",
    "3rdPartyProviderError",
    "InternalServerError",
)

#: Error codes of responses that carry no prediction (HTTP status != 200).
HTTP_ERROR_CODES: dict[str, int] = {
    "BadRequest": 400,
    "UnauthorizedAccess": 401,
    "NotFound": 404,
    "RateLimitExceeded": 429,
    "ConcurrencyLimitExceeded": 429,
    "OutOfCredits": 429,
    "InternalServerError": 500,
}

#: Statuses after which a prediction never changes again.
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "canceled"})

#: Statuses of a prediction still running, in the order it passes them.
RUNNING_STATUSES: tuple[str, ...] = ("starting", "in_queue", "processing")
