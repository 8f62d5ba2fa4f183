"""Submissions the emulator refuses up front, in the error shape of the body sent."""

from __future__ import annotations

import base64
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest
from emu_support import MODEL, current_body, flat_body, running

from fashn_async.testing import WindowLimit

MISSING = object()
PAYLOAD = MODEL.split(",", 1)[1]
BAD_IMAGES = [
    (42, "must be a string"),
    (None, "is required"),
    ("", "must be an http(s) URL"),
    ("not a url", "must be an http(s) URL"),
    ("ftp://127.0.0.1/a.png", "must be an http(s) URL"),
    ("http://", "must be an http(s) URL"),
    ("/relative/a.png", "must be an http(s) URL"),
    ("data:image/png;base64,!!!!", "not valid base64"),
    ("data:image/png;base64,aGVsbG8", "not valid base64"),
    ("data:image/png;base64,", "empty base64"),
    ("data:text/plain;base64,aGVsbG8=", "must start with data:image/"),
    ("data:image/png,aGVsbG8=", "must start with data:image/"),
]
FLAT_CASES: list[tuple[str, Any, str]] = [
    ("model_image", MISSING, "is required"),
    ("garment_image", MISSING, "is required"),
    ("category", MISSING, "is required"),
    ("category", "hats", "must be one of 'tops', 'bottoms', 'one-pieces'"),
    ("category", "auto", "must be one of"),
    ("category", 1, "must be one of"),
    ("garment_photo_type", "photo", "must be one of 'auto', 'flat-lay', 'model'"),
    ("garment_photo_type", None, "must be one of"),
    ("guidance_scale", 1.49, "must be between 1.5 and 3"),
    ("guidance_scale", 3.01, "must be between 1.5 and 3"),
    ("guidance_scale", "2", "must be a number"),
    ("guidance_scale", True, "must be a number"),
    ("timesteps", 9, "must be between 10 and 50"),
    ("timesteps", 51, "must be between 10 and 50"),
    ("timesteps", 20.5, "must be an integer"),
    ("timesteps", "20", "must be an integer"),
    ("timesteps", False, "must be an integer"),
    ("seed", "42", "must be an integer"),
    ("seed", 4.2, "must be an integer"),
    ("seed", 2**64, "must be between"),
    ("num_samples", 0, "must be between 1 and 4"),
    ("num_samples", 5, "must be between 1 and 4"),
    ("num_samples", 2.5, "must be an integer"),
    ("num_samples", None, "must be an integer"),
    *[
        (flag, value, "must be a boolean (true or false)")
        for flag in (
            "nsfw_filter",
            "cover_feet",
            "adjust_hands",
            "restore_background",
            "restore_clothes",
            "long_top",
        )
        for value in ("true", 1, 0, None)
    ],
    *[
        (field, value, problem)
        for field in ("model_image", "garment_image")
        for value, problem in BAD_IMAGES
    ],
]
CURRENT_CASES: list[tuple[str, Any, str]] = [
    ("model_image", MISSING, "is required"),
    ("garment_image", MISSING, "is required"),
    ("category", "hats", "must be one of 'auto', 'tops', 'bottoms', 'one-pieces'"),
    ("garment_photo_type", "photo", "must be one of"),
    ("mode", "fast", "must be one of 'performance', 'balanced', 'quality'"),
    ("moderation_level", "strict", "must be one of 'conservative', 'permissive', 'none'"),
    ("segmentation_free", "yes", "must be a boolean"),
    ("output_format", "webp", "must be one of 'png', 'jpeg'"),
    ("return_base64", 1, "must be a boolean"),
    ("num_samples", 5, "must be between 1 and 4"),
    ("num_samples", 0, "must be between 1 and 4"),
    ("seed", "x", "must be an integer"),
    *[
        (field, value, problem)
        for field in ("model_image", "garment_image")
        for value, problem in BAD_IMAGES
    ],
]


def _with(body: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    body = dict(body)
    if value is MISSING:
        body.pop(field)
    else:
        body[field] = value
    return body


@pytest.fixture
async def api() -> AsyncIterator[Any]:
    """An emulator with no limits in the way."""
    async with running(submit_limit=None, in_flight_limit=None) as api:
        yield api


@pytest.mark.parametrize(("field", "value", "problem"), FLAT_CASES)
async def test_bad_flat_body_answers_v1_shape(
    api: Any, field: str, value: Any, problem: str
) -> None:
    """A bad flat v1 body is a 400 InputValidationError in the v1 shape, naming the field."""
    reply = await api.run(_with(flat_body(), field, value))
    assert reply.status == 400, reply
    assert set(reply.json) == {"id", "error"}
    assert reply.json["id"] is None
    assert reply.json["error"]["name"] == "InputValidationError"
    message = reply.json["error"]["message"]
    assert message.startswith(f"{field}: ")
    assert problem in message
    report = api.emu.report()
    assert report.accepted == []
    assert report.bad_requests == 1


@pytest.mark.parametrize(("field", "value", "problem"), CURRENT_CASES)
async def test_bad_current_inputs_answer_current_shape(
    api: Any, field: str, value: Any, problem: str
) -> None:
    """A bad input of a current body is a 400 BadRequest in the current shape, naming it."""
    body = current_body()
    body["inputs"] = _with(body["inputs"], field, value)
    reply = await api.run(body)
    assert reply.status == 400, reply
    assert set(reply.json) == {"error", "message"}
    assert reply.json["error"] == "BadRequest"
    assert reply.json["message"].startswith(f"inputs.{field}: ")
    assert problem in reply.json["message"]
    assert api.emu.report().accepted == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"inputs": {}}, "model_name: is required"),
        ({"model_name": "tryon-v9", "inputs": {}}, "model_name: unknown model"),
        ({"model_name": 5, "inputs": {}}, "model_name: unknown model"),
        ({"model_name": "tryon-v1.6"}, "inputs: must be an object"),
        ({"model_name": "tryon-v1.6", "inputs": "x"}, "inputs: must be an object"),
        ({"model_name": "tryon-v1.6", "inputs": []}, "inputs: must be an object"),
        ({"model_name": "edit", "inputs": {"image": 5}}, "inputs.image: must be a string"),
        (
            {"model_name": "edit", "inputs": {"image": MODEL, "num_samples": 9}},
            "inputs.num_samples",
        ),
        ({"model_name": "model-swap", "inputs": {"face_image": "nope"}}, "inputs.face_image"),
    ],
)
async def test_bad_current_envelope(api: Any, body: dict[str, Any], problem: str) -> None:
    """Unknown model names and malformed envelopes are 400 BadRequest in the current shape."""
    reply = await api.run(body)
    assert reply.status == 400
    assert reply.json["error"] == "BadRequest"
    assert reply.json["message"].startswith(problem)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[]", b'"text"', b"null", b"3", b'{"seed": NaN}', b"\xff\xfe\x00", b"[" * 100_000],
    ids=["empty", "truncated", "array", "string", "null", "number", "nan", "bad-utf8", "deep"],
)
async def test_malformed_json_is_bad_request(api: Any, raw: bytes) -> None:
    """A body that is not a JSON object is a 400 BadRequest in the current shape."""
    reply = await api.request("POST", "/v1/run", data=raw)
    assert reply.status == 400
    assert reply.json["error"] == "BadRequest"
    assert reply.json["message"].startswith("body: ")


@pytest.mark.parametrize(
    "fields",
    [
        {"guidance_scale": 1.5, "timesteps": 10, "num_samples": 4},
        {"guidance_scale": 3, "timesteps": 50, "num_samples": 1},
        {"timesteps": 20.0, "seed": -1},
        {"category": "bottoms", "garment_photo_type": "flat-lay", "long_top": True},
        {"category": "one-pieces", "nsfw_filter": False, "cover_feet": True},
        {"adjust_hands": True, "restore_background": True, "restore_clothes": True},
        {"unknown_field": "ignored"},
        {"model_image": "data:image/jpg;base64, " + PAYLOAD},
        {"garment_image": "data:image/png;base64," + "\n".join(textwrap.wrap(PAYLOAD, 76))},
    ],
    ids=[
        "low-bounds",
        "high-bounds",
        "integral-float",
        "bottoms",
        "one-pieces",
        "flags",
        "extra",
        "space",
        "wrapped",
    ],
)
async def test_valid_flat_edges_accepted(api: Any, fields: dict[str, Any]) -> None:
    """Boundary values, every enum and lenient base64 whitespace are accepted."""
    reply = await api.run(flat_body(**fields))
    assert reply.status == 200, reply
    final = await api.until_terminal(reply.json["id"])
    assert final["status"] == "completed"


@pytest.mark.parametrize(
    "inputs",
    [
        {"category": "auto", "mode": "performance", "moderation_level": "none"},
        {"category": "one-pieces", "mode": "quality", "moderation_level": "conservative"},
        {"segmentation_free": False, "garment_photo_type": "model", "seed": 7},
    ],
)
async def test_valid_current_inputs_accepted(api: Any, inputs: dict[str, Any]) -> None:
    """Every tryon-v1.6 enum value is accepted."""
    reply = await api.run(current_body(**inputs))
    assert reply.status == 200, reply


async def test_body_over_cap_is_413() -> None:
    """A body larger than max_body_bytes is refused with 413 in the current shape."""
    async with running(max_body_bytes=2000) as api:
        big = flat_body(
            model_image="data:image/png;base64," + base64.b64encode(b"x" * 3000).decode()
        )
        reply = await api.run(big)
        assert reply.status == 413
        assert reply.json["error"] == "PayloadTooLarge"
        assert "2000" in reply.json["message"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b" " * 1000

        chunked = await api.request("POST", "/v1/run", data=chunks())  # type: ignore[arg-type]
        assert chunked.status == 413
        assert api.emu.report().accepted == []


@pytest.mark.parametrize(
    "webhook",
    ["http://example.com/hook", "https://10.0.0.1/hook", "ftp://127.0.0.1/hook", "not a url", ""],
)
async def test_non_loopback_webhook_refused(api: Any, webhook: str) -> None:
    """A webhook_url off loopback is a 400 in the body's shape; nothing is created."""
    flat = await api.run(flat_body(), params={"webhook_url": webhook})
    assert flat.status == 400
    assert flat.json["error"]["name"] == "InputValidationError"
    assert flat.json["error"]["message"].startswith("webhook_url: ")
    current = await api.run(current_body(), params={"webhook_url": webhook})
    assert current.status == 400
    assert current.json["error"] == "BadRequest"
    assert api.emu.report().accepted == []


async def test_generations_above_window_limit_refused() -> None:
    """A submission that could never fit the submit window is a 400, not an endless 429."""
    async with running(submit_limit=WindowLimit(3, 60.0)) as api:
        reply = await api.run(current_body(num_samples=4))
        assert reply.status == 400
        assert reply.json["error"] == "BadRequest"
        assert "num_samples" in reply.json["message"]
