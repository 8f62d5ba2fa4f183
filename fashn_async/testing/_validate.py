"""Reading a ``POST /v1/run`` body: the flat v1 shape and the current one.

A bad flat body is reported in the v1 error shape, a bad current body in the current one,
so a client meets both. Messages name the field and the problem.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

import attrs
import yarl

__all__ = [
    "MAX_DEPTH",
    "MODEL_NAMES",
    "ImageInput",
    "InvalidRequest",
    "Submission",
    "parse_submission",
    "too_deep",
    "url_host",
]

#: Models of the current API (NOTES.md). A flat v1 body runs on the legacy model.
MODEL_NAMES: frozenset[str] = frozenset(
    {
        "tryon-v1.6",
        "tryon-max",
        "product-to-model",
        "face-to-model",
        "model-create",
        "model-variation",
        "model-swap",
        "edit",
        "reframe",
        "background-change",
        "background-remove",
        "image-to-video",
    }
)
LEGACY_MODEL = "tryon-v1"

_DATA_URI = re.compile(r"data:image/([A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)
_WHITESPACE = re.compile(rb"\s+")
_INT64 = 2**63
#: Deepest nesting of arrays and objects a body may have. A real body is 3 deep; a cap
#: far below Python's recursion limit keeps every later ``json.dumps`` of it safe.
MAX_DEPTH = 64


def url_host(url: yarl.URL) -> str | None:
    """Return the host of ``url``, or ``None`` when it has none, it is not valid IDNA, a
    label or the name is longer than DNS allows.

    yarl parses ``http://xn--/a.png`` but raises ``UnicodeError`` when asked its host.
    """
    try:
        host = url.host
    except ValueError:  # UnicodeError: an invalid IDNA label
        return None
    if host is None:
        return None
    if ":" in host:  # an IPv6 literal: yarl checked it
        return host
    name = host.removesuffix(".")
    # RFC 1035 section 2.3.4: a label is 1 to 63 octets, a name at most 253 in text.
    if not name or len(name) > 253 or not all(0 < len(label) <= 63 for label in name.split(".")):
        return None
    return host


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Return whether ``value`` nests arrays and objects more than ``limit`` deep.

    Iterative, so it is safe at any depth ``json.loads`` can produce.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


class InvalidRequest(Exception):
    """The body cannot be run; answered with 400 and no prediction.

    Attributes:
        legacy: The body was a flat v1 body, answered in the v1 error shape.
        message: What is wrong, naming the field.
    """

    def __init__(self, message: str, *, legacy: bool) -> None:
        super().__init__(message)
        self.message = message
        self.legacy = legacy


@attrs.frozen
class ImageInput:
    """An input image: a URL to fetch, or the decoded bytes of a data URI.

    Attributes:
        field: The body field, e.g. ``model_image``.
        source: The value as sent (a URL, or the whole data URI).
        data: The decoded bytes of a data URI; ``None`` for a URL.
    """

    field: str
    source: str = attrs.field(repr=False)
    data: bytes | None = attrs.field(default=None, repr=False)

    @property
    def role(self) -> str:
        """The image's role in error messages: ``model`` for ``model_image``."""
        return self.field.removesuffix("_image")


@attrs.frozen
class Submission:
    """A valid submission, reduced to what the emulator acts on."""

    model_name: str
    legacy: bool
    images: tuple[ImageInput, ...]
    category: str = "tops"
    num_samples: int = 1
    seed: int = 42
    output_format: str = "png"
    return_base64: bool = False

    def image_texts(self) -> tuple[str, ...]:
        """Return the values sent for ``model_image`` and ``garment_image``."""
        return tuple(
            image.source for image in self.images if image.field in ("model_image", "garment_image")
        )


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 60 else text[:57] + "..."


class _Fields:
    """Typed reads from one JSON object, raising InvalidRequest that names the field."""

    def __init__(self, obj: dict[str, Any], *, prefix: str, legacy: bool) -> None:
        self.obj = obj
        self.prefix = prefix
        self.legacy = legacy

    def fail(self, key: str, problem: str) -> InvalidRequest:
        return InvalidRequest(f"{self.prefix}{key}: {problem}", legacy=self.legacy)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.obj.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be a boolean (true or false), got {_show(value)}")
        return value

    def choice(self, key: str, default: str | None, choices: tuple[str, ...]) -> str:
        if key not in self.obj and default is not None:
            return default
        if key not in self.obj:
            raise self.fail(key, "is required")
        value = self.obj[key]
        if not isinstance(value, str) or value not in choices:
            allowed = ", ".join(repr(choice) for choice in choices)
            raise self.fail(key, f"must be one of {allowed}, got {_show(value)}")
        return value

    def integer(self, key: str, default: int, low: int = -_INT64, high: int = _INT64 - 1) -> int:
        value = self.obj.get(key, default)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {_show(value)}")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low} and {high}, got {value}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.obj.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {_show(value)}")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low:g} and {high:g}, got {value!r}")
        return float(value)

    def image(self, key: str, *, required: bool) -> ImageInput | None:
        if key not in self.obj and not required:
            return None
        if key not in self.obj or self.obj[key] is None:
            raise self.fail(key, "is required")
        value = self.obj[key]
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string (image URL or base64), got {_show(value)}")
        match = _DATA_URI.fullmatch(value)
        if match is not None:
            payload = _WHITESPACE.sub(b"", match.group(2).encode("ascii", "replace"))
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise self.fail(
                    key, "is not valid base64 after the data:image/...;base64, prefix"
                ) from None
            if not data:
                raise self.fail(key, "holds an empty base64 image")
            return ImageInput(key, value, data)
        if value.startswith("data:"):
            raise self.fail(key, "a base64 image must start with data:image/<type>;base64,")
        try:
            url = yarl.URL(value)
        except (ValueError, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.raw_host:
            raise self.fail(
                key,
                "must be an http(s) URL or a base64 data URI with its "
                f"prefix (data:image/<type>;base64,...), got {_show(value)}",
            )
        if url_host(url) is None:
            raise self.fail(key, f"the URL's host is not a valid host name, got {_show(value)}")
        if any(ord(char) < 0x21 or ord(char) == 0x7F for char in value):
            raise self.fail(key, f"a URL has no white space or control character: {_show(value)}")
        return ImageInput(key, value)


def _flat(body: dict[str, Any]) -> Submission:
    """Validate a flat v1 body; every field of the v1 reference, with its default."""
    fields = _Fields(body, prefix="", legacy=True)
    model = fields.image("model_image", required=True)
    garment = fields.image("garment_image", required=True)
    category = fields.choice("category", None, ("tops", "bottoms", "one-pieces"))
    for flag, default in (
        ("nsfw_filter", True),
        ("cover_feet", False),
        ("adjust_hands", False),
        ("restore_background", False),
        ("restore_clothes", False),
        ("long_top", False),
    ):
        fields.boolean(flag, default)
    fields.choice("garment_photo_type", "auto", ("auto", "flat-lay", "model"))
    fields.number("guidance_scale", 2.0, 1.5, 3.0)
    fields.integer("timesteps", 50, 10, 50)
    seed = fields.integer("seed", 42)
    num_samples = fields.integer("num_samples", 1, 1, 4)
    assert model is not None
    assert garment is not None
    return Submission(LEGACY_MODEL, True, (model, garment), category, num_samples, seed)


def _tryon(fields: _Fields) -> tuple[tuple[ImageInput, ...], str]:
    """Validate the tryon-v1.6 inputs (NOTES.md)."""
    model = fields.image("model_image", required=True)
    garment = fields.image("garment_image", required=True)
    category = fields.choice("category", "auto", ("auto", "tops", "bottoms", "one-pieces"))
    fields.choice("garment_photo_type", "auto", ("auto", "flat-lay", "model"))
    fields.choice("mode", "balanced", ("performance", "balanced", "quality"))
    fields.choice("moderation_level", "permissive", ("conservative", "permissive", "none"))
    fields.boolean("segmentation_free", True)
    assert model is not None
    assert garment is not None
    return (model, garment), ("tops" if category == "auto" else category)


def _generic(fields: _Fields) -> tuple[ImageInput, ...]:
    """Validate what any model's inputs share: every ``*_image`` field present."""
    images: list[ImageInput] = []
    for key in sorted(fields.obj):
        if key == "image" or key.endswith("_image"):
            image = fields.image(key, required=True)
            assert image is not None
            images.append(image)
    return tuple(images)


def _current(body: dict[str, Any]) -> Submission:
    """Validate a ``{"model_name": ..., "inputs": {...}}`` body."""
    top = _Fields(body, prefix="", legacy=False)
    name = body.get("model_name")
    if name is None:
        raise top.fail("model_name", "is required")
    if not isinstance(name, str) or name not in MODEL_NAMES:
        raise top.fail(
            "model_name",
            f"unknown model {_show(name)}; known models: " + ", ".join(sorted(MODEL_NAMES)),
        )
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        raise top.fail("inputs", f"must be an object, got {_show(inputs)}")
    fields = _Fields(inputs, prefix="inputs.", legacy=False)
    if name == "tryon-v1.6":
        images, category = _tryon(fields)
    else:
        images, category = _generic(fields), "tops"
    seed = fields.integer("seed", 42)
    num_samples = fields.integer("num_samples", 1, 1, 4)
    output_format = fields.choice("output_format", "png", ("png", "jpeg"))
    return_base64 = fields.boolean("return_base64", False)
    return Submission(
        name, False, images, category, num_samples, seed, output_format, return_base64
    )


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_submission(raw: bytes) -> tuple[Submission, Any]:
    """Parse and validate a run body.

    Returns:
        The submission and the parsed JSON (for the payload digest).

    Raises:
        InvalidRequest: The body is not JSON, not an object, nested more than
            :data:`MAX_DEPTH` deep, or breaks a field's rules.
    """
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidRequest(
            f"body: arrays and objects nested more than {MAX_DEPTH} deep", legacy=False
        ) from None
    except ValueError as exc:
        raise InvalidRequest(f"body: malformed JSON ({exc})", legacy=False) from None
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"body: must be a JSON object, got {type(body).__name__}", legacy=False
        )
    current = "model_name" in body or "inputs" in body
    if too_deep(body):
        raise InvalidRequest(
            f"body: arrays and objects nested more than {MAX_DEPTH} deep", legacy=not current
        )
    return (_current(body) if current else _flat(body)), body
