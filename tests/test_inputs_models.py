"""ModelRequest: required inputs checked locally; inputs changed after construction re-checked."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import PNG
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_async import AsyncFashn, ModelRequest, errors
from fashn_async.testing import Emulator


def assert_nothing_sent(emulator: Emulator) -> None:
    """The emulator saw no submission, no 400 and no status call."""
    report = emulator.report()
    assert (report.accepted, report.bad_requests, report.status_calls_total) == ([], 0, 0)


@pytest.mark.parametrize(
    ("inputs", "missing"),
    [
        ({}, "model_image: is required"),
        ({"garment_image": PNG}, "model_image"),
        ({"model_image": PNG}, "garment_image: is required"),
        ({"model_image": PNG, "garment_image": None}, "garment_image"),
    ],
)
async def test_tryon_without_its_required_images_is_refused_unsent(
    emulator: Emulator, client: AsyncFashn, inputs: dict[str, Any], missing: str
) -> None:
    """tryon-v1.6 without model_image or garment_image: InvalidRequestError, 0 requests."""
    with pytest.raises(errors.InvalidRequestError, match=f"inputs.{missing}"):
        await client.submit(ModelRequest(model_name="tryon-v1.6", inputs=inputs))
    assert_nothing_sent(emulator)


async def test_other_models_keep_their_own_inputs(emulator: Emulator, client: AsyncFashn) -> None:
    """A model whose inputs NOTES.md does not list is not held to tryon's requirements."""
    await client.submit(ModelRequest(model_name="background-remove", inputs={"image": PNG}))
    assert len(emulator.report().accepted) == 1


CHANGES: list[tuple[str, Any, str]] = [
    ("seed", -1, "inputs.seed"),
    ("num_samples", 9, "inputs.num_samples"),
    ("mode", "fastest", "inputs.mode"),
    ("extra", float("nan"), "inputs.extra"),
    ("extra", {1, 2}, "inputs.extra"),
    ("extra", 10**400, "inputs.extra"),
]


@settings(max_examples=20, deadline=None)
@given(change=st.sampled_from([*CHANGES, ("model_image", None, "inputs.model_image")]))
def test_inputs_changed_after_construction_are_checked_when_sent(
    change: tuple[str, Any, str],
) -> None:
    """A value put into inputs after the check is refused as the body is built."""
    key, value, field = change
    request = ModelRequest(
        model_name="tryon-v1.6", inputs={"model_image": PNG, "garment_image": PNG}
    )
    request.inputs[key] = value  # type: ignore[index]
    images = dict.fromkeys(("model_image", "garment_image"), "https://example.com/a.png")
    if key == "model_image":
        del request.inputs[key]  # type: ignore[attr-defined]
        images.pop(key)
    with pytest.raises(errors.InvalidRequestError, match=field):
        request.body(images)


async def test_a_changed_input_is_refused_before_sending(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """Through a real client: the changed request is refused, nothing sent, nested too."""
    request = ModelRequest(
        model_name="tryon-v1.6",
        inputs={"model_image": PNG, "garment_image": PNG, "extra": {"a": [1]}},
    )
    request.inputs["extra"]["a"].append(float("inf"))
    with pytest.raises(errors.InvalidRequestError, match=r"inputs\.extra\.a\[1\]"):
        await client.submit(request)
    request.inputs["extra"]["a"].pop()
    request.inputs["seed"] = 2**63  # type: ignore[index]
    with pytest.raises(errors.InvalidRequestError, match="inputs.seed"):
        await client.submit(request)
    assert_nothing_sent(emulator)
