"""TryOnRequest and ModelRequest validate every field at construction."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from helpers import PNG

from fashn_async import ModelRequest, TryOnRequest
from fashn_async._images import encode_image
from fashn_async.errors import ImageInputError, InvalidRequestError

URL = "http://127.0.0.1:1/model.png"
BASE = {"model_image": URL, "garment_image": URL, "category": "tops"}

V1_DEFAULTS = {
    "nsfw_filter": True,
    "cover_feet": False,
    "adjust_hands": False,
    "restore_background": False,
    "restore_clothes": False,
    "garment_photo_type": "auto",
    "long_top": False,
    "guidance_scale": 2.0,
    "timesteps": 50,
    "seed": 42,
    "num_samples": 1,
}


def test_defaults_are_the_v1_reference() -> None:
    """Every optional field defaults to the value the v1 reference documents."""
    body = TryOnRequest(**BASE).body({})
    for name, value in V1_DEFAULTS.items():
        assert body[name] == value, name


BOOL_FIELDS = [n for n, v in V1_DEFAULTS.items() if isinstance(v, bool)]

BAD_VALUES: list[tuple[str, Any]] = [
    ("category", "shoes"),
    ("category", "auto"),  # only the current API knows "auto"
    ("category", None),
    ("garment_photo_type", "photo"),
    ("guidance_scale", 1.4),
    ("guidance_scale", 3.01),
    ("guidance_scale", float("nan")),
    ("guidance_scale", "2"),
    ("guidance_scale", True),
    ("timesteps", 9),
    ("timesteps", 51),
    ("timesteps", 20.0),
    ("seed", -1),
    ("seed", "42"),
    ("num_samples", 0),
    ("num_samples", 5),
    ("num_samples", True),
    *[(name, "yes") for name in BOOL_FIELDS],
    *[(name, 1) for name in BOOL_FIELDS],
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_bad_field_fails_at_construction(field: str, value: Any) -> None:
    """A bad value is refused when the request is built, naming the field."""
    with pytest.raises(InvalidRequestError, match=field):
        TryOnRequest(**{**BASE, field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("guidance_scale", 1.5), ("guidance_scale", 3), ("timesteps", 10), ("num_samples", 4)],
)
def test_range_bounds_are_inclusive(field: str, value: Any) -> None:
    """The documented range ends are accepted."""
    assert getattr(TryOnRequest(**{**BASE, field: value}), field) == value


@pytest.mark.parametrize(
    "value",
    [
        "ftp://example.invalid/a.png",
        "not a url",
        "http://",
        "data:text/plain;base64,aGVsbG8=",
        "data:image/png;base64,***",
        "data:image/png;base64,AAAA",  # base64 of three zero bytes: no image
        b"",
        12,
        None,
    ],
)
def test_bad_image_value_fails_at_construction(value: Any) -> None:
    """Image fields refuse values that can be known bad without I/O."""
    with pytest.raises(ImageInputError, match="model_image"):
        TryOnRequest(**{**BASE, "model_image": value})


PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (URL, URL),
        ("https://cdn.example.invalid/x.jpg", "https://cdn.example.invalid/x.jpg"),
        (PNG, PNG_URI),
        ("path", PNG_URI),
        (PNG_URI, PNG_URI),
    ],
)
async def test_image_forms_accepted(value: Any, sent: str, tmp_path: Path) -> None:
    """URLs, data URIs, bytes and paths are kept as given, and sent as a URL or data URI."""
    if value == "path":
        value = tmp_path / "garment.png"
        value.write_bytes(PNG)
    request = TryOnRequest(**{**BASE, "garment_image": value})
    assert request.garment_image is value
    assert await encode_image("garment_image", request.garment_image) == sent.encode()


def test_missing_required_field() -> None:
    """Leaving out a required field is an error naming it."""
    with pytest.raises(TypeError, match="category"):
        TryOnRequest(model_image=URL, garment_image=URL)  # type: ignore[call-arg]


def test_generations_count_samples() -> None:
    """num_samples is what a request weighs against the generation limit."""
    assert TryOnRequest(**BASE, num_samples=3).generations == 3
    assert ModelRequest(model_name="tryon-v1.6", inputs={**BASE, "num_samples": 2}).generations == 2


def test_model_request_shape_and_validation() -> None:
    """ModelRequest builds the current body and checks names, inputs and images."""
    request = ModelRequest(model_name="tryon-v1.6", inputs={**BASE, "mode": "quality"})
    body = request.body({"model_image": "data:image/png;base64,AA=="})
    assert body["model_name"] == "tryon-v1.6"
    assert body["inputs"]["mode"] == "quality"
    assert body["inputs"]["model_image"] == "data:image/png;base64,AA=="
    with pytest.raises(InvalidRequestError, match="model_name"):
        ModelRequest(model_name=" ", inputs={})
    with pytest.raises(InvalidRequestError, match="inputs"):
        ModelRequest(model_name="edit", inputs=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ImageInputError, match=r"inputs\.garment_image"):
        ModelRequest(model_name="tryon-v1.6", inputs={"garment_image": "nope"})
    with pytest.raises(InvalidRequestError, match="num_samples"):
        ModelRequest(model_name="tryon-v1.6", inputs={"num_samples": 9})


def test_requests_are_frozen() -> None:
    """Requests are immutable values."""
    request = TryOnRequest(**BASE)
    with pytest.raises(AttributeError):
        request.category = "bottoms"  # type: ignore[misc]
