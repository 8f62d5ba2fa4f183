"""Backoff and Retry-After parsing: pure policy, checked exhaustively."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fashn_async import RetryPolicy
from fashn_async._retry import compute_backoff, parse_retry_after


@given(
    attempt=st.integers(1, 200),
    initial=st.floats(0.01, 10),
    maximum=st.floats(0.01, 100),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_bounded(
    attempt: int, initial: float, maximum: float, jitter: float, seed: int
) -> None:
    """A backoff is never negative and never above the cap."""
    delay = compute_backoff(
        attempt, initial=initial, maximum=maximum, jitter=jitter, rng=random.Random(seed)
    )
    assert 0 <= delay <= maximum


def test_backoff_grows_exponentially_without_jitter() -> None:
    """Without jitter the backoff doubles until the cap."""
    delays = [compute_backoff(a, initial=0.5, maximum=5, jitter=0) for a in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_retry_after_wins_and_is_capped() -> None:
    """A server's Retry-After replaces the backoff, up to max_retry_after."""
    policy = RetryPolicy(max_retry_after=30)
    assert policy.delay(1, 12.5) == 12.5
    assert policy.delay(1, 3600) == 30


def test_parse_retry_after_folded_dates_read_as_the_longest() -> None:
    """Folded values with HTTP-dates among them (whose day name has a comma of its own):
    each read, the longest wins."""
    now = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    later = "Thu, 03 Dec 2026 12:00:08 GMT"
    sooner = "Thu, 03 Dec 2026 12:00:02 GMT"
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after(f"{past}, 4", now=now) == 4.0
    assert parse_retry_after(f"{sooner}, {later}", now=now) == 8.0
    assert parse_retry_after(f"{later}, {sooner}", now=now) == 8.0
    assert parse_retry_after(f"3, {sooner}", now=now) == 3.0
    assert parse_retry_after("Thursday, 03-Dec-26 12:00:05 GMT, 1", now=now) == 5.0
    assert parse_retry_after(later, now=now) == 8.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0.35", 0.35),
        (" 3 ", 3.0),
        ("\t4\t", 4.0),
        ("-1", None),
        ("soon", None),
        ("nan", None),
        (None, None),
        ("0, 3", 3.0),  # sent twice, folded into one line by a proxy: the longest
        ("3,0", 3.0),
        ("soon, 2", 2.0),
        (" , ", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Delay-seconds parse; nonsense is ignored rather than trusted; folded values read
    as the longest."""
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    "value",
    ["9" * 400, "1" + "0" * 309, "99999999999999999999", "86401", "Fri, 01 Jan 9999 00:00:00 GMT"],
)
def test_a_huge_retry_after_means_the_longest_wait_not_none(value: str) -> None:
    """A valid but huge Retry-After (more digits than a float holds, a far date) is read
    as a day: the policy then waits its cap, not the short backoff of "no header"."""
    assert parse_retry_after(value) == 86400.0
    assert RetryPolicy(max_retry_after=120).delay(1, parse_retry_after(value)) == 120


@pytest.mark.parametrize(
    "value",
    [
        "inf",
        "1e3",
        "+5",
        "1_000",
        "\u0663",
        "0x10",
        "5s",
        "1.",
        ".5",
        "\xa0100",
        "5\u2003",
        "\x855",
    ],
)
def test_retry_after_that_is_not_ascii_delay_seconds_is_unusable(value: str) -> None:
    """Only ASCII digits (a decimal fraction allowed) are delay-seconds (RFC 9110): what
    Python's float() also takes (exponents, signs, underscores, Arabic-Indic digits) is not."""
    assert parse_retry_after(value) is None


@given(st.text(max_size=40))
def test_parse_retry_after_is_none_or_a_bounded_number(value: str) -> None:
    """Whatever the header says: None, or seconds in [0, a day]; never an exception."""
    seconds = parse_retry_after(value)
    assert seconds is None or 0.0 <= seconds <= 86400.0


@given(st.integers(0, 10**500))
def test_every_digit_string_is_read(value: int) -> None:
    """Every delay-seconds value is usable: exact below a day, a day above."""
    assert parse_retry_after(str(value)) == min(float(min(value, 10**300)), 86400.0)


def test_parse_retry_after_http_date() -> None:
    """An HTTP-date is turned into seconds from now; a past date is zero."""
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    future = format_datetime(now + timedelta(seconds=90), usegmt=True)
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(future, now=now) == 90.0
    assert parse_retry_after(past, now=now) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"initial": 0}, {"maximum": -1}, {"jitter": 2}, {"rate_limit_waits": 0}],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    """A retry policy with a nonsensical value fails at construction."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@given(
    attempt=st.integers(1, 100),
    retry_after=st.one_of(st.none(), st.floats(0, 1e12, allow_nan=False)),
    seed=st.integers(0, 2**32),
)
def test_delay_is_within_floor_and_cap(attempt: int, retry_after: float | None, seed: int) -> None:
    """Every wait is at least min_delay and at most max(maximum, max_retry_after)."""
    policy = RetryPolicy(min_delay=0.5, maximum=30, max_retry_after=120)
    delay = policy.delay(attempt, retry_after, rng=random.Random(seed))
    assert 0.5 <= delay <= 120


def test_floor_above_the_caps_is_refused() -> None:
    """A min_delay above maximum or max_retry_after cannot be met: ValueError at once."""
    with pytest.raises(ValueError, match="min_delay"):
        RetryPolicy(min_delay=5, maximum=1)
    with pytest.raises(ValueError, match="min_delay"):
        RetryPolicy(min_delay=5, max_retry_after=1)


def test_scaled_policy_scales_every_duration() -> None:
    """scaled(f) multiplies the backoff, its cap, the floor and the Retry-After cap."""
    policy = RetryPolicy().scaled(0.01)
    assert (policy.initial, policy.maximum, policy.min_delay, policy.max_retry_after) == (
        0.005,
        0.3,
        0.005,
        1.2,
    )
    assert policy.attempts == RetryPolicy().attempts


def test_parse_retry_after_past_date_far_in_the_past() -> None:
    """A Retry-After date decades ago reads as 0 seconds (the floor then applies)."""
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
