"""Ints too big for a float, and absurd durations: typed errors naming the field, not sent."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from helpers import PNG
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_async import (
    AsyncFashn,
    ImagePreparation,
    Limits,
    ModelRequest,
    Polling,
    Rate,
    RetryPolicy,
    TryOnRequest,
    errors,
)
from fashn_async._validators import MAX_SECONDS, MIN_TIMEOUT
from fashn_async.testing import Emulator, EmulatorConfig

URL = "https://example.com/a.png"
#: Ints a float cannot hold, of either sign.
HUGE = st.one_of(
    st.integers(min_value=int(sys.float_info.max) + 1, max_value=10**1000),
    st.integers(min_value=-(10**1000), max_value=-int(sys.float_info.max) - 1),
)

REQUEST_FIELDS: list[tuple[str, Callable[[int], Any]]] = [
    ("seed", lambda n: TryOnRequest(model_image=URL, garment_image=URL, category="tops", seed=n)),
    (
        "timesteps",
        lambda n: TryOnRequest(model_image=URL, garment_image=URL, category="tops", timesteps=n),
    ),
    (
        "guidance_scale",
        lambda n: TryOnRequest(
            model_image=URL, garment_image=URL, category="tops", guidance_scale=n
        ),
    ),
    ("inputs.strength", lambda n: ModelRequest(model_name="edit", inputs={"strength": n})),
    (
        r"inputs.a.b\[1\].c",
        lambda n: ModelRequest(model_name="edit", inputs={"a": {"b": [0, {"c": n}]}}),
    ),
]

OPTIONS: list[tuple[str, Callable[[int], Any]]] = [
    ("limit", lambda n: Rate(n, 60.0)),
    ("period", lambda n: Rate(1, n)),
    ("margin", lambda n: Limits(margin=n)),
    ("in_flight", lambda n: Limits(in_flight=n)),
    ("status_burst", lambda n: Limits(status_burst=n)),
    ("prior", lambda n: Polling(prior=(1, n))),
    ("target_lag", lambda n: Polling(target_lag=n)),
    ("idle_lag", lambda n: Polling(idle_lag=n)),
    ("max_interval", lambda n: Polling(max_interval=n)),
    ("backoff", lambda n: Polling(backoff=n)),
    ("memory", lambda n: Polling(memory=n)),
    ("explore", lambda n: Polling(explore=n)),
    ("prior_weight", lambda n: Polling(prior_weight=n)),
    ("attempts", lambda n: RetryPolicy(attempts=n)),
    ("initial", lambda n: RetryPolicy(initial=n)),
    ("maximum", lambda n: RetryPolicy(maximum=n)),
    ("jitter", lambda n: RetryPolicy(jitter=n)),
    ("min_delay", lambda n: RetryPolicy(min_delay=n)),
    ("max_retry_after", lambda n: RetryPolicy(max_retry_after=n)),
    ("max_edge", lambda n: ImagePreparation(max_edge=n)),
    ("jpeg_quality", lambda n: ImagePreparation(jpeg_quality=n)),
    ("cache_bytes", lambda n: ImagePreparation(cache_bytes=n)),
    ("timeout", lambda n: AsyncFashn(api_key="test-key-0123", timeout=n)),
    ("connect_timeout", lambda n: AsyncFashn(api_key="test-key-0123", connect_timeout=n)),
    ("max_connections", lambda n: AsyncFashn(api_key="test-key-0123", max_connections=n)),
]


@settings(max_examples=30, deadline=None)
@given(HUGE, st.sampled_from(REQUEST_FIELDS))
def test_huge_ints_in_request_fields_are_invalid_requests(
    n: int, case: tuple[str, Callable[[int], Any]]
) -> None:
    """An int beyond float range in any number field, however nested, names the field."""
    field, make = case
    with pytest.raises(errors.InvalidRequestError, match=field):
        make(n)


@settings(max_examples=60, deadline=None)
@given(HUGE, st.sampled_from(OPTIONS))
def test_huge_ints_in_options_are_configuration_errors(
    n: int, case: tuple[str, Callable[[int], Any]]
) -> None:
    """An int beyond float range in any option is a ConfigurationError naming it."""
    name, make = case
    with pytest.raises(errors.ConfigurationError, match=name):
        make(n)


@pytest.mark.parametrize("name", ["time_scale", "body_timeout", "status_retention", "latency"])
def test_huge_ints_in_emulator_config_are_value_errors(name: str) -> None:
    """EmulatorConfig refuses an int beyond float range with a ValueError naming the field."""
    value: Any = (1, 10**400) if name == "latency" else 10**400
    with pytest.raises(ValueError, match=name):
        EmulatorConfig(**{name: value})


DURATIONS: list[tuple[str, Callable[[float], Any]]] = [
    ("period", lambda s: Rate(1, s)),
    ("margin", lambda s: Limits(margin=s)),
    ("prior", lambda s: Polling(prior=(1, s))),
    ("target_lag", lambda s: Polling(target_lag=s, max_interval=s)),
    ("max_interval", lambda s: Polling(max_interval=s)),
    ("initial", lambda s: RetryPolicy(initial=s)),
    ("max_retry_after", lambda s: RetryPolicy(max_retry_after=s)),
    ("timeout", lambda s: AsyncFashn(api_key="test-key-0123", timeout=s)),
]


@settings(max_examples=40, deadline=None)
@given(
    st.floats(min_value=MAX_SECONDS, exclude_min=True, allow_infinity=False),
    st.sampled_from(DURATIONS),
)
def test_durations_over_a_day_are_refused(
    seconds: float, case: tuple[str, Callable[[float], Any]]
) -> None:
    """Any duration over MAX_SECONDS (a day; 1e308 included) is a ConfigurationError."""
    name, make = case
    with pytest.raises(errors.ConfigurationError, match=name):
        make(seconds)
    make(MAX_SECONDS)  # the bound itself is accepted


@pytest.mark.parametrize("name", ["timeout", "connect_timeout"])
@pytest.mark.parametrize("seconds", [1e-320, 5e-324, MIN_TIMEOUT / 2])
def test_timeouts_under_a_millisecond_are_refused(name: str, seconds: float) -> None:
    """A network timeout below MIN_TIMEOUT (1 ms) is a unit mistake: refused by name."""
    with pytest.raises(errors.ConfigurationError, match=name):
        AsyncFashn(api_key="test-key-0123", **{name: seconds})
    AsyncFashn(api_key="test-key-0123", **{name: MIN_TIMEOUT})


async def test_huge_ints_through_a_client_send_nothing(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """run(deadline=10**400), a huge seed and a nested huge input: refused, 0 requests."""
    with pytest.raises(errors.InvalidRequestError, match="deadline"):
        await client.run(model_image=URL, garment_image=URL, category="tops", deadline=10**400)
    with pytest.raises(errors.InvalidRequestError, match="seed"):
        await client.run(model_image=URL, garment_image=URL, category="tops", seed=10**400)
    with pytest.raises(errors.InvalidRequestError, match=r"inputs\.a\[0\]"):
        await client.submit(ModelRequest(model_name="edit", inputs={"a": [-(10**400)]}))
    report = emulator.report()
    assert (report.accepted, report.bad_requests, report.status_calls_total) == ([], 0, 0)


@pytest.mark.parametrize(
    ("lags", "name"), [({"target_lag": 10.5}, "target_lag"), ({"idle_lag": 60.0}, "idle_lag")]
)
def test_a_lag_over_max_interval_is_refused(lags: dict[str, float], name: str) -> None:
    """A poll spacing over max_interval contradicts it (run() waited past it): refused
    (idle_lag over it is over target_lag too, and refused for that first)."""
    with pytest.raises(errors.ConfigurationError, match=f"{name} .* must not exceed"):
        Polling(max_interval=10.0, **lags)
    with pytest.raises(errors.ConfigurationError, match="target_lag"):
        Polling(target_lag=MAX_SECONDS)  # the default max_interval is 10 s


@pytest.mark.client(polling=Polling(target_lag=10.0, max_interval=10.0))
async def test_the_longest_target_lag_still_polls_within_max_interval(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """With target_lag at its cap, run() still sees the result within max_interval."""
    import asyncio

    loop = asyncio.get_running_loop()
    start = loop.time()
    result = await client.run(model_image=PNG, garment_image=PNG, category="tops")
    assert result.output
    # The emulator takes 5-11 s; polls are at most max_interval (10 s) apart.
    assert loop.time() - start <= 11 + 10 + 1
