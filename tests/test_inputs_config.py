"""Every configuration value is checked when given: ConfigurationError, a ValueError."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fashn_async import (
    AsyncFashn,
    ImagePreparation,
    Limits,
    Polling,
    Rate,
    RedisCoordination,
    RetryPolicy,
    errors,
)

BAD_OPTIONS: list[tuple[Any, dict[str, Any], str]] = [
    (Limits, {"margin": math.nan}, "margin"),
    (Limits, {"margin": math.inf}, "margin"),
    (Limits, {"margin": -1}, "margin"),
    (Limits, {"margin": "0.25"}, "margin"),
    (Limits, {"in_flight": 0}, "in_flight"),
    (Limits, {"in_flight": 2.5}, "in_flight"),
    (Limits, {"status_burst": True}, "status_burst"),
    (Limits, {"submit": (25, 60)}, "submit"),
    (Limits, {"status": "50/10"}, "status"),
    (Rate, {"limit": 0, "period": 60}, "limit"),
    (Rate, {"limit": 2.5, "period": 60}, "limit"),
    (Rate, {"limit": 25, "period": math.inf}, "period"),
    (Rate, {"limit": 25, "period": math.nan}, "period"),
    (Rate, {"limit": 25, "period": "60"}, "period"),
    (Polling, {"prior": (5.0, math.inf)}, "prior"),
    (Polling, {"prior": (math.nan, 1.0)}, "prior"),
    (Polling, {"target_lag": math.inf}, "target_lag"),
    (Polling, {"max_interval": -1}, "max_interval"),
    (Polling, {"backoff": math.nan}, "backoff"),
    (Polling, {"memory": 0}, "memory"),
    (Polling, {"memory": "200"}, "memory"),
    (RetryPolicy, {"attempts": 0}, "attempts"),
    (RetryPolicy, {"attempts": math.inf}, "attempts"),
    (RetryPolicy, {"initial": math.nan}, "initial"),
    (RetryPolicy, {"maximum": math.inf}, "maximum"),
    (RetryPolicy, {"jitter": math.nan}, "jitter"),
    (RetryPolicy, {"jitter": "0.1"}, "jitter"),
    (RetryPolicy, {"jitter": 1.5}, "jitter"),
    (RetryPolicy, {"max_retry_after": math.inf}, "max_retry_after"),
    (ImagePreparation, {"max_edge": 0}, "max_edge"),
    (ImagePreparation, {"max_edge": 2000.0}, "max_edge"),
    (ImagePreparation, {"jpeg_quality": 101}, "jpeg_quality"),
    (ImagePreparation, {"cache_bytes": -1}, "cache_bytes"),
    (AsyncFashn, {"timeout": "5"}, "timeout"),
    (AsyncFashn, {"timeout": -1}, "timeout"),
    (AsyncFashn, {"timeout": math.nan}, "timeout"),
    (AsyncFashn, {"timeout": math.inf}, "timeout"),
    (AsyncFashn, {"connect_timeout": 0}, "connect_timeout"),
    (AsyncFashn, {"max_connections": -1}, "max_connections"),
    (AsyncFashn, {"max_connections": 0}, "max_connections"),
    (AsyncFashn, {"max_connections": 10.5}, "max_connections"),
    (AsyncFashn, {"polling": {"prior": (1, 2)}}, "polling"),
    (AsyncFashn, {"retry": 3}, "retry"),
    (AsyncFashn, {"limits": {"in_flight": 6}}, "limits"),
    (AsyncFashn, {"prepare_images": "yes"}, "prepare_images"),
    (AsyncFashn, {"base_url": "http://127.0.0.1:99999"}, "base_url"),
    (AsyncFashn, {"base_url": "http://127.0.0.1:0"}, "base_url"),
    (RedisCoordination, {"url": "redis://h", "lease_ttl": math.inf}, "lease_ttl"),
    (RedisCoordination, {"url": "redis://h", "timeout": math.nan}, "timeout"),
]


@pytest.mark.parametrize(
    ("cls", "options", "name"),
    BAD_OPTIONS,
    ids=[f"{c.__name__}-{n}-{o[n]!r}" for c, o, n in BAD_OPTIONS],
)
def test_bad_option_is_a_configuration_error_naming_it(
    cls: Any, options: dict[str, Any], name: str
) -> None:
    """Each bad option fails at construction with ConfigurationError naming the option."""
    if cls is AsyncFashn:
        options = {"api_key": "test-key-0123", **options}
    with pytest.raises(errors.ConfigurationError, match=name) as info:
        cls(**options)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, errors.FashnError)


def test_pillow_missing_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Pillow, asking for image preparation says which extra to install."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "PIL" else real(name, *a)
    )
    with pytest.raises(errors.ConfigurationError, match=r"fashn-async\[images\]"):
        AsyncFashn(api_key="test-key-0123", prepare_images=True)


async def test_bad_call_options_are_typed(client: AsyncFashn) -> None:
    """run(deadline=...), batch(max_pending=...) and submit(webhook_url=...) are checked."""
    for deadline in ("5", 0, -1, math.inf, math.nan, True, 10**400):  # one message for all
        with pytest.raises(errors.InvalidRequestError, match="deadline must be a finite number"):
            await client.run(
                model_image="http://127.0.0.1:1/a.png",
                garment_image="http://127.0.0.1:1/b.png",
                category="tops",
                deadline=deadline,  # type: ignore[arg-type]
            )
    with pytest.raises(errors.ConfigurationError, match="max_pending"):
        client.batch([], max_pending=0)
    with pytest.raises(errors.ConfigurationError, match="on_progress must be callable"):
        client.batch([], on_progress="print")  # type: ignore[arg-type]
    # A webhook is an http(s) URL the API calls back: its messages never offer a data URI
    # (they did, and a lower-case one was told to start with 'data:' in lowercase).
    for hook, match in (
        ("ftp://127.0.0.1/hook", r"expected an http\(s\) URL \(the scheme 'ftp'"),
        ("data:image/png;base64,iVBORw0KGgo=", r"expected an http\(s\) URL, not a data URI"),
        ("DATA:image/png;base64,iVBORw0KGgo=", r"expected an http\(s\) URL, not a data URI"),
    ):
        with pytest.raises(errors.InvalidRequestError, match=match) as info:
            await client.submit(
                model_image="http://127.0.0.1:1/a.png",
                garment_image="http://127.0.0.1:1/b.png",
                category="tops",
                webhook_url=hook,
            )
        assert info.value.message.startswith("webhook_url: ")
        assert "data:image/<type>" not in info.value.message


class _Raises:
    """A key whose truth and length raise (a hostile object, or a lazy secret wrapper)."""

    def __len__(self) -> int:
        raise RuntimeError("len")

    def __bool__(self) -> bool:
        raise RuntimeError("bool")


@pytest.mark.parametrize(
    "key", [b"fashn-key", 123, ["fashn-key"], _Raises()], ids=["bytes", "int", "list", "raises"]
)
def test_an_api_key_not_a_str_is_refused_as_such(key: object) -> None:
    """Not "no API key" (one was given) and not the object's own error: the type, named,
    and the value never shown."""
    with pytest.raises(errors.ConfigurationError, match="the API key must be a str") as info:
        AsyncFashn(api_key=key)  # type: ignore[arg-type]
    assert "fashn-key" not in str(info.value)
