"""Text UTF-8 cannot carry (lone surrogates): refused by name wherever a string is sent."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import PNG
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_async import AsyncFashn, ModelRequest, TryOnRequest, errors
from fashn_async.testing import Emulator

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)


@st.composite
def with_surrogate(draw: st.DrawFn) -> str:
    """Printable ASCII text with one lone surrogate somewhere in it."""
    text = draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12))
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(SURROGATES) + text[at:]


@st.composite
def nested(draw: st.DrawFn, leaf: Any) -> tuple[Any, str]:
    """A value holding ``leaf`` some levels down, in lists and dicts, and its field path."""
    value, path = leaf, ""
    for kind in draw(st.lists(st.sampled_from(["list", "dict"]), min_size=1, max_size=5)):
        if kind == "list":
            value, path = [0, value], f"[1]{path}"
        else:
            value, path = {"k": value}, f".k{path}"
    return value, path


def assert_nothing_sent(emulator: Emulator) -> None:
    """The emulator saw no submission, no 400 and no status call."""
    report = emulator.report()
    assert (report.accepted, report.bad_requests, report.status_calls_total) == ([], 0, 0)


@settings(max_examples=60, deadline=None)
@given(bad=with_surrogate(), data=st.data())
def test_every_string_field_and_key_is_checked_at_any_depth(bad: str, data: st.DataObject) -> None:
    """Image URLs, model names, input values and input keys at any depth: typed, named."""
    with pytest.raises(errors.ImageInputError, match="model_image: .*surrogate"):
        TryOnRequest(model_image=f"http://example.com/{bad}", garment_image=PNG, category="tops")
    with pytest.raises(errors.InvalidRequestError, match="model_name: .*surrogate"):
        ModelRequest(model_name=f"edit{bad}", inputs={})
    value, path = data.draw(nested(bad))
    with pytest.raises(errors.InvalidRequestError, match="surrogate") as caught:
        ModelRequest(model_name="edit", inputs={"a": value})
    assert caught.value.message.startswith(f"inputs.a{path}")
    keyed, key_path = data.draw(nested({bad: 1}))
    with pytest.raises(errors.InvalidRequestError, match="keys have no lone surrogate") as caught:
        ModelRequest(model_name="edit", inputs={"a": keyed})
    assert caught.value.message.startswith(f"inputs.a{key_path}")


async def test_ids_and_webhook_urls_with_surrogates_send_nothing(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """status/cancel/wait ids and a webhook_url with a lone surrogate: typed, 0 requests."""
    for call in (client.status, client.cancel, client.wait):
        with pytest.raises(errors.InvalidRequestError, match="prediction id"):
            await call("\ud800")  # type: ignore[operator]
    with pytest.raises(errors.InvalidRequestError, match="webhook_url: .*surrogate"):
        await client.submit(
            model_image=PNG,
            garment_image=PNG,
            category="tops",
            webhook_url="http://127.0.0.1/\udfff",
        )
    with pytest.raises(errors.ImageInputError, match="model_image: .*surrogate"):
        await client.submit(
            model_image="http://example.com/\ud800", garment_image=PNG, category="tops"
        )
    assert_nothing_sent(emulator)
