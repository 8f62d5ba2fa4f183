"""One number test behind every request and configuration check: never a raw exception."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fashn_async import ModelRequest, Rate, RetryPolicy, TryOnRequest, errors
from fashn_async._validators import (
    INT64_MAX,
    MAX_SECONDS,
    check_number,
    config_int,
    in_range,
    is_finite_number,
    visible,
)

URL = "https://example.com/a.png"

NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**1023, max_value=2**1100),  # past what a float holds
    st.integers(min_value=-(2**1100), max_value=-(2**1023)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from([None, "1", b"1", 1j, [1]]),
)


def fits_a_float(value: Any) -> bool:
    """An int or float a float can hold finitely (10**400 cannot)."""
    return type(value) in (int, float) and abs(value) <= sys.float_info.max


def expected_int(value: Any, low: float, high: float) -> bool:
    """The rule, written out: an int (not a bool) from low to high, within float range."""
    return type(value) is int and fits_a_float(value) and low <= value <= high


@given(NUMBERS)
def test_request_integers_are_checked_exactly(value: Any) -> None:
    """An integer request field takes any int in range; all else is an InvalidRequestError."""
    ok = expected_int(value, 0, INT64_MAX)
    assert in_range(value, 0, INT64_MAX, integer=True) is ok
    if ok:
        assert TryOnRequest(model_image=URL, garment_image=URL, category="tops", seed=value)
        assert ModelRequest(model_name="m", inputs={"x": value})
    else:
        with pytest.raises(errors.InvalidRequestError, match="seed"):
            TryOnRequest(model_image=URL, garment_image=URL, category="tops", seed=value)
        with pytest.raises(errors.InvalidRequestError, match="seed"):
            check_number("seed", value, 0, INT64_MAX, integer=True)
    json_int = expected_int(value, -INT64_MAX - 1, INT64_MAX)
    if isinstance(value, int) and not isinstance(value, bool) and not json_int:
        with pytest.raises(errors.InvalidRequestError, match=r"inputs\.x"):
            ModelRequest(model_name="m", inputs={"x": value})


@given(NUMBERS)
def test_configuration_integers_are_checked_exactly(value: Any) -> None:
    """An integer option takes an int >= 1 a float can hold; all else is a
    ConfigurationError naming it (10**400 included)."""
    if expected_int(value, 1, math.inf):
        config_int("limit", value)
        assert Rate(value, 1.0).limit == value
        assert RetryPolicy(attempts=value).attempts == value
    else:
        with pytest.raises(errors.ConfigurationError, match="limit"):
            Rate(value, 1.0)
        with pytest.raises(errors.ConfigurationError, match="attempts"):
            RetryPolicy(attempts=value)


@given(NUMBERS)
def test_configuration_numbers_are_finite(value: Any) -> None:
    """A seconds option takes a finite number > 0 up to a day (MAX_SECONDS); nothing else."""
    ok = fits_a_float(value) and 0 < value <= MAX_SECONDS
    if ok:
        assert RetryPolicy(initial=value).initial == value
        assert Rate(1, value).period == value
    else:
        with pytest.raises(errors.ConfigurationError, match="initial"):
            RetryPolicy(initial=value)
        with pytest.raises(errors.ConfigurationError, match="period"):
            Rate(1, value)


@given(NUMBERS)
def test_an_int_beyond_float_range_is_never_a_finite_number(value: Any) -> None:
    """is_finite_number: finite floats and ints within float range; never a bool or 10**400."""
    expected = fits_a_float(value) and (type(value) is int or math.isfinite(value))
    assert is_finite_number(value) is expected
    if type(value) is int and not expected:
        assert not in_range(value, -math.inf, math.inf)


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_a_visible_line_holds_only_what_prints_as_itself(text: str) -> None:
    """Whatever a file held, the line shown has no character that acts instead of
    printing (a control, a bidirectional override, a zero-width or separator one), is
    the text itself where it had none, and loses nothing (each escape reads back)."""
    shown = visible(text)
    assert shown.isprintable()
    if text.isprintable():
        assert shown == text
    assert len(shown) >= len(text)


@pytest.mark.parametrize(
    "hidden", ["\n", "\x1b", "\x9b", "\u202e", "\u2066", "\u200f", "\u2028", "\xa0"]
)
def test_each_kind_that_acts_instead_of_printing_is_escaped(hidden: str) -> None:
    """The kinds a helper tried (C0, C1, bidi override and isolate, direction mark, line
    separator, no-break space): each shown as its escape."""
    assert visible(f"a{hidden}b") == f"a{hidden.encode('unicode_escape').decode()}b"
