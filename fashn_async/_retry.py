"""Retry policy as pure functions: backoff and Retry-After parsing.

Kept apart from the I/O that uses them so they can be tested exhaustively (stamina's
``_compute_backoff``). Which requests may be retried at all is decided in ``_client``:
GETs always may; POST /v1/run only when no prediction can exist.
"""

from __future__ import annotations

import email.utils
import math
import random
from datetime import UTC, datetime

import attrs

from fashn_async._validators import at_least_one, config_number, positive
from fashn_async.errors import ConfigurationError

__all__ = ["RetryPolicy", "compute_backoff", "parse_retry_after"]


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how patiently safe requests are retried.

    Args:
        attempts: Total tries of one request, the first included.
        initial: Backoff before the first retry, in seconds.
        maximum: Cap of one backoff, in seconds.
        jitter: Random share added to each backoff (0 to 1), so clients spread out.
        max_retry_after: Cap on a server's Retry-After, in seconds.
    """

    attempts: int = attrs.field(default=5, validator=at_least_one)
    initial: float = attrs.field(default=0.5, validator=positive)
    maximum: float = attrs.field(default=30.0, validator=positive)
    jitter: float = attrs.field(default=0.25)
    max_retry_after: float = attrs.field(default=120.0, validator=positive)

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute[float], value: float) -> None:
        config_number("jitter", value, strict=False)
        if value > 1:
            raise ConfigurationError(f"jitter must be from 0 to 1, got {value!r}")

    def delay(
        self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return compute_backoff(
            attempt, initial=self.initial, maximum=self.maximum, jitter=self.jitter, rng=rng
        )


def compute_backoff(
    attempt: int,
    *,
    initial: float,
    maximum: float,
    jitter: float,
    rng: random.Random | None = None,
) -> float:
    """Capped exponential backoff with proportional jitter; ``attempt`` starts at 1."""
    base = min(maximum, initial * 2.0 ** max(attempt - 1, 0))
    spread = base * jitter * (rng or random).random()
    return min(maximum, base + spread)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
