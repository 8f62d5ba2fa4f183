"""fashn-async: the asyncio SDK for the FASHN virtual try-on API.

Strict client-side limits, retries only where they cannot charge twice, adaptive status
polling, and streaming batches that cancel what they started when you leave.
"""

from fashn_async import errors
from fashn_async._batch import Batch
from fashn_async._client import AsyncFashn
from fashn_async._coordination import RedisCoordination
from fashn_async._events import BatchEvents, BatchProgress
from fashn_async._images import ImageInput
from fashn_async._limits import Limits, Rate
from fashn_async._models import (
    Credits,
    ErrorInfo,
    ModelRequest,
    Prediction,
    PredictionStatus,
    Request,
    TryOnRequest,
)
from fashn_async._polling import Polling
from fashn_async._prepare import ImagePreparation
from fashn_async._results import BatchInput, BatchResult, Result, TryOnResult
from fashn_async._retry import RetryPolicy
from fashn_async._version import __version__

__all__ = [
    "AsyncFashn",
    "Batch",
    "BatchEvents",
    "BatchInput",
    "BatchProgress",
    "BatchResult",
    "Credits",
    "ErrorInfo",
    "ImageInput",
    "ImagePreparation",
    "Limits",
    "ModelRequest",
    "Polling",
    "Prediction",
    "PredictionStatus",
    "Rate",
    "RedisCoordination",
    "Request",
    "Result",
    "RetryPolicy",
    "TryOnRequest",
    "TryOnResult",
    "__version__",
    "errors",
]
