"""Misused arguments and options: a typed error naming them, never a raw exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_async import AsyncFashn, ModelRequest, errors
from fashn_async.testing import Emulator, sample_image


@pytest.mark.parametrize("directory", [None, 5, b"/p", "a\0b", "", "\ud800", Path("a\0b")])
async def test_save_refuses_what_is_not_a_folder_path(
    client: AsyncFashn, emulator: Emulator, tmp_path: Path, directory: Any
) -> None:
    """save(None), save(5), save(b"/p"), a NUL or surrogate: InvalidRequestError, no file."""
    result = await client.run(
        ModelRequest(
            model_name="tryon-v1.6",
            inputs={"model_image": sample_image("model"), "garment_image": sample_image("garment")},
        )
    )
    with pytest.raises(errors.InvalidRequestError, match=r"save\(directory\)"):
        await result.save(directory)
    with pytest.raises(errors.InvalidRequestError, match=r"save\(stem\)"):
        await result.save(tmp_path, stem=5)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


BAD_TEXT = st.sampled_from([" ", "\n", "\r", "\t", "\0", "\x7f", "\ud800", "\u2028"])


@settings(max_examples=40, deadline=None)
@given(bad=BAD_TEXT, at=st.integers(0, 30))
def test_base_url_and_proxy_with_space_control_or_surrogate_are_refused(bad: str, at: int) -> None:
    """White space, control characters or a lone surrogate anywhere in base_url or proxy."""
    url = "http://127.0.0.1:8080/v1/path"
    at = min(at, len(url))
    broken = url[:at] + bad + url[at:]
    if broken.strip() == url:  # at the very ends, white space is not inside the URL
        broken = url[:8] + bad + url[8:]
    with pytest.raises(errors.ConfigurationError, match="base_url"):
        AsyncFashn(api_key="test-key-0123", base_url=broken)
    with pytest.raises(errors.ConfigurationError, match="proxy"):
        AsyncFashn(api_key="test-key-0123", proxy=broken)


@pytest.mark.parametrize("key", ["clé-secrète", "key\u2013dash", "“key”", "k\u00a0ey"])
def test_a_non_ascii_api_key_is_refused_without_showing_it(key: str) -> None:
    """A non-ASCII API key (typographic quote, dash): ConfigurationError, key not shown."""
    with pytest.raises(errors.ConfigurationError, match="API key") as caught:
        AsyncFashn(api_key=key)
    assert key not in str(caught.value)


@pytest.mark.parametrize("value", ["no", "false", 0, 1, None, "True"])
def test_trust_env_must_be_a_bool(value: Any) -> None:
    """trust_env="no" must not read as True: anything but a bool is a ConfigurationError."""
    with pytest.raises(errors.ConfigurationError, match="trust_env"):
        AsyncFashn(api_key="test-key-0123", trust_env=value)
