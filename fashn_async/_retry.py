"""Retry policy as pure functions: backoff, the wait floor and cap, Retry-After parsing.

Kept apart from the I/O that uses them so they can be tested exhaustively (stamina's
``_compute_backoff``). *Whether* a request is retried is decided in one place,
:func:`fashn_async._decisions.decide`; this module only says how long to wait.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from datetime import UTC, datetime

import attrs

from fashn_async._validators import MAX_SECONDS, at_least_one, config_number, seconds
from fashn_async.errors import ConfigurationError

__all__ = ["RetryPolicy", "compute_backoff", "parse_retry_after"]

#: Retry-After's delay-seconds: ASCII digits, and (leniently) a decimal fraction.
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how patiently requests that are safe to repeat are repeated.

    Every wait is at least ``min_delay`` and at most ``max(maximum, max_retry_after)``
    seconds: a ``Retry-After: 0`` (or an HTTP-date in the past) never makes a hot loop.

    Args:
        attempts: Tries of one request, the first included, over connection failures,
            5xx answers and unreadable answers.
        rate_limit_waits: 429 answers one request waits out; the next one is raised.
        initial: Backoff before the first retry, in seconds.
        maximum: Cap of one backoff, in seconds.
        jitter: Random share added to each backoff (0 to 1), so clients spread out.
        min_delay: Floor of every wait before a retry, in seconds, whatever the server's
            Retry-After says.
        max_retry_after: Cap on a server's Retry-After, in seconds (NOTES.md: honour it
            when present, bounded).

    Raises:
        ConfigurationError: a count below 1, a duration not above 0 or over a day
            (``MAX_SECONDS``), jitter outside [0, 1], or ``min_delay`` above ``maximum``
            or ``max_retry_after``.
    """

    attempts: int = attrs.field(default=5, validator=at_least_one)
    rate_limit_waits: int = attrs.field(default=30, validator=at_least_one)
    initial: float = attrs.field(default=0.5, validator=seconds)
    maximum: float = attrs.field(default=30.0, validator=seconds)
    jitter: float = attrs.field(default=0.25)
    min_delay: float = attrs.field(default=0.5, validator=seconds)
    max_retry_after: float = attrs.field(default=120.0, validator=seconds)

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute[float], value: float) -> None:
        config_number("jitter", value, strict=False)
        if value > 1:
            raise ConfigurationError(f"jitter must be from 0 to 1, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.min_delay > min(self.maximum, self.max_retry_after):
            raise ConfigurationError(
                f"min_delay ({self.min_delay!r}) must not exceed maximum ({self.maximum!r}) "
                f"or max_retry_after ({self.max_retry_after!r})"
            )

    @property
    def longest_wait(self) -> float:
        """The longest single wait this policy can ask for, in seconds."""
        return max(self.maximum, self.max_retry_after)

    def delay(
        self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based).

        The exponential backoff, or the server's Retry-After (capped at
        ``max_retry_after``) when that is longer; never below ``min_delay``.
        """
        wait = compute_backoff(
            attempt, initial=self.initial, maximum=self.maximum, jitter=self.jitter, rng=rng
        )
        if retry_after is not None and math.isfinite(retry_after):
            wait = max(wait, min(retry_after, self.max_retry_after))
        return max(wait, self.min_delay)

    def scaled(self, factor: float) -> RetryPolicy:
        """This policy with every duration multiplied by ``factor`` (for a fast emulator)."""
        return attrs.evolve(
            self,
            initial=self.initial * factor,
            maximum=self.maximum * factor,
            min_delay=self.min_delay * factor,
            max_retry_after=self.max_retry_after * factor,
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
    base = min(maximum, initial * 2.0 ** min(max(attempt - 1, 0), 64))
    spread = base * jitter * (rng or random).random()
    return min(maximum, base + spread)


#: Day names an HTTP-date opens with, before its one comma (IMF-fixdate, RFC 850).
_DAYS = frozenset(
    {"mon", "tue", "wed", "thu", "fri", "sat", "sun", "monday", "tuesday", "wednesday"}
    | {"thursday", "friday", "saturday", "sunday"}
)


def _unfolded(value: str) -> list[str]:
    """The values of a header line a proxy folded (``"0, 3"``, ``"<date>, 4"``): split at
    its commas, but not at the one after an HTTP-date's day name."""
    parts = [part.strip(" \t") for part in value.split(",")]
    values: list[str] = []
    for part in parts:
        if values and values[-1].casefold() in _DAYS:
            values[-1] = f"{values[-1]}, {part}"
        else:
            values.append(part)
    return values


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or HTTP-date); None if unusable.

    delay-seconds is ASCII digits (RFC 9110 section 10.2.3; a decimal fraction is read
    too), between spaces or tabs only; a sign, an exponent, ``inf``, ``nan``, other
    digits or other whitespace make it unusable. Any
    delay, however many digits, is read up to a day (``MAX_SECONDS``): the policy's
    ``max_retry_after`` caps it further. A date in the past (the client's clock ahead
    of the server's) reads as 0 seconds; the policy's ``min_delay`` then applies. Values
    folded into one line by a proxy (``0, 3``) read as the longest.
    """
    if value is None:
        return None
    values = _unfolded(value)
    if len(values) > 1:  # sent twice, folded into one line by a proxy: the longest
        waits = [parse_retry_after(part, now=now) for part in values]
        return max((wait for wait in waits if wait is not None), default=None)
    value = value.strip(" \t")  # HTTP's optional whitespace: no other space counts
    if _DELAY_SECONDS.fullmatch(value):
        return min(float(value), MAX_SECONDS)  # 400 digits read as inf: capped
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return min(max(0.0, (when - (now or datetime.now(UTC))).total_seconds()), MAX_SECONDS)
    except OverflowError:  # pragma: no cover - a date beyond datetime's range
        return None
