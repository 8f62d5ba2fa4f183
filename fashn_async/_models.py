"""Requests and results: frozen attrs classes, validated when built.

Bad input fails here, at construction, before anything is sent. The one private cattrs
converter reads API answers: unknown JSON fields are ignored, unknown statuses and error
names are kept as strings (the API grows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs
import cattrs

from fashn_async._images import ImageInput, check_image_input
from fashn_async._names import TERMINAL_STATUSES
from fashn_async.errors import (
    InvalidRequestError,
    PredictionCanceledError,
    prediction_error_from_payload,
)

__all__ = [
    "CATEGORIES",
    "GARMENT_PHOTO_TYPES",
    "Credits",
    "ImageInput",
    "ModelRequest",
    "Prediction",
    "PredictionStatus",
    "Request",
    "TryOnRequest",
    "converter",
]

Category = Literal["tops", "bottoms", "one-pieces"]
GarmentPhotoType = Literal["auto", "flat-lay", "model"]
CATEGORIES: Final = ("tops", "bottoms", "one-pieces")
GARMENT_PHOTO_TYPES: Final = ("auto", "flat-lay", "model")


def _fail(field: str, problem: str, value: Any) -> InvalidRequestError:
    return InvalidRequestError(f"{field}: {problem} (got {value!r:.80})", name="InvalidRequest")


def _check_image(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_image_input(attribute.name, value)


def _check_choice(choices: tuple[str, ...]) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise _fail(attribute.name, f"must be one of {', '.join(choices)}", value)

    return check


def _check_bool(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(attribute.name, "must be True or False", value)


def _require_int(field: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, "must be an integer", value)
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise _fail(field, f"must be {span}", value)


def _check_int(low: int, high: int | None) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        _require_int(attribute.name, value, low, high)

    return check


def _check_float(low: float, high: float) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(attribute.name, "must be a number", value)
        if not math.isfinite(value) or not low <= value <= high:
            raise _fail(attribute.name, f"must be from {low} to {high}", value)

    return check


@attrs.frozen(kw_only=True)
class TryOnRequest:
    """One virtual try-on, with every field of the v1 reference and its default.

    Args:
        model_image: The person: URL, data URI, path, bytes or binary file.
        garment_image: The garment, in any of the same forms.
        category: ``"tops"``, ``"bottoms"`` or ``"one-pieces"``.
        nsfw_filter: Run the NSFW filter on the inputs.
        cover_feet: Let long garments cover the feet.
        adjust_hands: Let the hands change (gloves, pockets, long sleeves).
        restore_background: Extra steps to keep the background; slower.
        restore_clothes: Extra steps to keep clothes that are not swapped.
        garment_photo_type: ``"auto"``, ``"flat-lay"`` or ``"model"``.
        long_top: Tune for long tops (tunics, coats).
        guidance_scale: 1.5 to 3; higher keeps detail, risks saturation.
        timesteps: Diffusion steps, 10 to 50.
        seed: Fixes randomness for reproducible results.
        num_samples: Images to generate, 1 to 4; each counts as a generation.
    """

    model_image: ImageInput = attrs.field(validator=_check_image)
    garment_image: ImageInput = attrs.field(validator=_check_image)
    category: Category = attrs.field(validator=_check_choice(CATEGORIES))
    nsfw_filter: bool = attrs.field(default=True, validator=_check_bool)
    cover_feet: bool = attrs.field(default=False, validator=_check_bool)
    adjust_hands: bool = attrs.field(default=False, validator=_check_bool)
    restore_background: bool = attrs.field(default=False, validator=_check_bool)
    restore_clothes: bool = attrs.field(default=False, validator=_check_bool)
    garment_photo_type: GarmentPhotoType = attrs.field(
        default="auto", validator=_check_choice(GARMENT_PHOTO_TYPES)
    )
    long_top: bool = attrs.field(default=False, validator=_check_bool)
    guidance_scale: float = attrs.field(default=2.0, validator=_check_float(1.5, 3.0))
    timesteps: int = attrs.field(default=50, validator=_check_int(10, 50))
    seed: int = attrs.field(default=42, validator=_check_int(0, None))
    num_samples: int = attrs.field(default=1, validator=_check_int(1, 4))

    @property
    def generations(self) -> int:
        """How many generations this request counts against the rate limit."""
        return self.num_samples

    def image_fields(self) -> dict[str, ImageInput]:
        """The image-valued fields, by name."""
        return {"model_image": self.model_image, "garment_image": self.garment_image}

    def body(self, images: Mapping[str, str]) -> dict[str, Any]:
        """The flat v1 JSON body, with images already turned into URLs or data URIs."""
        body = attrs.asdict(self, recurse=False)
        body.update(images)
        return body


def _check_model_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _fail("model_name", "must be a non-empty string", value)


def _check_inputs(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _fail("inputs", "must be a mapping of input names to values", value)
    for key, item in value.items():
        if not isinstance(key, str):
            raise _fail("inputs", "keys must be strings", key)
        if _is_image_key(key):
            check_image_input(f"inputs.{key}", item)
    if "num_samples" in value:
        _require_int("inputs.num_samples", value["num_samples"], 1, 4)


def _is_image_key(key: str) -> bool:
    return key.endswith("_image") or key == "image"


def _frozen_inputs(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen(kw_only=True)
class ModelRequest:
    """A request in the current ``{"model_name", "inputs"}`` shape, for any model.

    Inputs named ``*_image`` (or ``image``) take every image form ``TryOnRequest`` takes
    and are encoded the same way; the rest is sent as given.

    Args:
        model_name: e.g. ``"tryon-v1.6"``, ``"tryon-max"``, ``"background-remove"``.
        inputs: The model's inputs, as documented for that model.
    """

    model_name: str = attrs.field(validator=_check_model_name)
    inputs: Mapping[str, Any] = attrs.field(converter=_frozen_inputs, validator=_check_inputs)

    @property
    def generations(self) -> int:
        """How many generations this request counts against the rate limit."""
        samples = self.inputs.get("num_samples", 1)
        return samples if isinstance(samples, int) else 1

    def image_fields(self) -> dict[str, ImageInput]:
        """The image-valued inputs, by name."""
        return {k: v for k, v in self.inputs.items() if _is_image_key(k)}

    def body(self, images: Mapping[str, str]) -> dict[str, Any]:
        """The current-shape JSON body, with images already encoded."""
        return {"model_name": self.model_name, "inputs": {**self.inputs, **images}}


#: Anything ``submit``, ``run`` and ``batch`` accept as one request.
Request: TypeAlias = TryOnRequest | ModelRequest


@attrs.frozen
class Prediction:
    """A submitted prediction."""

    id: str


@attrs.frozen
class ErrorInfo:
    """The ``error`` object of a failed prediction."""

    name: str | None = None
    message: str | None = None


@attrs.frozen(kw_only=True)
class PredictionStatus:
    """One answer of GET /v1/status/:id.

    ``status`` keeps values this version does not know; only completed, failed and
    canceled are terminal.
    """

    id: str
    status: str
    output: tuple[str, ...] | None = None
    error: ErrorInfo | None = None

    @property
    def done(self) -> bool:
        """True once the prediction can no longer change."""
        return self.status in TERMINAL_STATUSES

    def raise_for_status(self) -> None:
        """Raise the typed error of a failed or canceled prediction."""
        if self.status == "failed":
            info = self.error or ErrorInfo()
            raise prediction_error_from_payload(info.name, info.message, prediction_id=self.id)
        if self.status == "canceled":
            raise PredictionCanceledError("the prediction was canceled", prediction_id=self.id)


@attrs.frozen(kw_only=True)
class Credits:
    """The account's credit balance."""

    total: float
    subscription: float
    on_demand: float


converter = cattrs.Converter(forbid_extra_keys=False)


def _structure_error(value: Any, _: type) -> ErrorInfo | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ErrorInfo(name=value)
    if isinstance(value, Mapping):
        name, message = value.get("name"), value.get("message")
        return ErrorInfo(
            name=name if isinstance(name, str) else None,
            message=message if isinstance(message, str) else None,
        )
    return ErrorInfo(message=str(value))


converter.register_structure_hook(ErrorInfo | None, _structure_error)


def _structure_output(value: Any, _: type) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(str(item) for item in value)


converter.register_structure_hook(tuple[str, ...] | None, _structure_output)
